"""The local development chain: an Anvil process on a free loopback port, started and stopped by us.

`serve_devchain` is `dolphin chain deploy`'s daemon (when no RPC URL is given): a dev chain with the
system deployed, ready.json in its data dir, until SIGINT/SIGTERM. `open_devchain` serves the demo and
tests that need a chain outside Brownie's fixtures; `time_travel`, `keep_mining` and `mine` move a dev
chain's clock (`dolphin chain advance`, the demo). Anvil comes from the npm package @foundry-rs/anvil
(installed by `make setup`); its default accounts are derived from the well-known development mnemonic,
so they hold test ETH only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chain.errors import ChainError
from runtime.ready import check_data_dir_free, write_ready_file

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_CHAIN_ID = 31337
_REPO_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(rb"Listening on (\d+\.\d+\.\d+\.\d+):(\d+)")


class DevChainError(ChainError):
    """The local Anvil chain could not be found or started."""


def find_anvil() -> Path:
    """The Anvil binary: $DOLPHIN_ANVIL, the project's toolchain folder, node_modules, then PATH."""
    candidates = [
        os.environ.get("DOLPHIN_ANVIL"),
        _REPO_ROOT / ".toolchain" / "anvil",
        _REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil",
        shutil.which("anvil"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise DevChainError("Anvil not found: run `make setup` (it installs @foundry-rs/anvil from npm)")


def dev_private_keys(count: int) -> list[str]:
    """Private keys of Anvil's default accounts (BIP-44 path m/44'/60'/0'/0/i of DEV_MNEMONIC)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
        for i in range(count)
    ]


DEV_GENESIS_VALIDATOR_INDICES = (1, 2, 3)
"""Dev-mnemonic accounts that form a dev chain's genesis validator set: the demo's and tests' validators."""


def dev_genesis_validators() -> list[str]:
    """Addresses of the dev chain's genesis validators (DEV_GENESIS_VALIDATOR_INDICES of the dev mnemonic)."""
    from eth_account import Account

    keys = dev_private_keys(max(DEV_GENESIS_VALIDATOR_INDICES) + 1)
    return [Account.from_key(keys[i]).address for i in DEV_GENESIS_VALIDATOR_INDICES]


@dataclass(frozen=True)
class DevChain:
    rpc_url: str
    chain_id: int
    private_keys: tuple[str, ...]
    process: subprocess.Popen


@contextmanager
def open_devchain(
    *,
    chain_id: int = DEFAULT_CHAIN_ID,
    accounts: int = 10,
    timeout: float = 30.0,
    block_time: int | None = None,
) -> Iterator[DevChain]:
    """Start Anvil on 127.0.0.1 with an OS-assigned port, yield it, and stop it on exit.

    Anvil mines only when a transaction arrives unless `block_time` is given: then it also mines an empty
    block every `block_time` seconds (still at once on a transaction), so block timestamps keep up with
    the clock as on a live chain and epoch ends pass without anyone sending a transaction."""
    interval = ["--block-time", str(block_time), "--mixed-mining"] if block_time else []
    command = [
        str(find_anvil()),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--chain-id",
        str(chain_id),
        "--accounts",
        str(accounts),
        "--mnemonic",
        DEV_MNEMONIC,
        *interval,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        address = _wait_listening(process, timeout)
        yield DevChain(
            rpc_url=f"http://{address}",
            chain_id=chain_id,
            private_keys=tuple(dev_private_keys(accounts)),
            process=process,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(process: subprocess.Popen, timeout: float) -> str:
    """Read Anvil's output until it names its address; keep draining it afterwards so it never blocks."""
    found: list[str] = []
    ready = threading.Event()

    stdout = process.stdout
    assert stdout is not None  # started with stdout=PIPE

    def reader() -> None:
        for line in stdout:
            if not ready.is_set() and (match := _LISTENING.search(line)):
                found.append(f"{match[1].decode()}:{match[2].decode()}")
                ready.set()
        ready.set()

    threading.Thread(target=reader, name="anvil-output", daemon=True).start()
    if not ready.wait(timeout) or not found:
        code = process.poll()
        raise DevChainError(
            f"Anvil did not start within {timeout:.0f} s"
            + (f" (exit code {code})" if code is not None else "")
        )
    return found[0]


def serve_devchain(
    data_dir: Path,
    deploy: Callable[[DevChain], Path],
    *,
    accounts: int,
    block_time: int | None,
    on_ready: Callable[[DevChain, Path], None],
) -> None:
    """Run a dev chain as the daemons run: refuse (DataDirInUse) a data dir another live chain serves,
    start Anvil, `deploy` to it (the deployment file's path), write ready.json (RPC URL, chain id,
    deployment file), tell `on_ready(chain, ready.json)`, and serve until SIGINT/SIGTERM; ready.json is
    removed on the way out. DevChainError when Anvil exits by itself."""
    check_data_dir_free(data_dir)
    with open_devchain(accounts=accounts, block_time=block_time) as dev:
        deployment = deploy(dev)
        ready = write_ready_file(
            data_dir, {"rpc_url": dev.rpc_url, "chain_id": dev.chain_id, "deployment": str(deployment)}
        )
        try:
            on_ready(dev, ready)
            _wait_for_signal(dev.process)
        finally:
            ready.unlink(missing_ok=True)


def _wait_for_signal(process: subprocess.Popen) -> None:
    """Wait for SIGINT or SIGTERM; a chain that exits by itself is an error."""

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a shell script's background job starts with SIGINT ignored, and Python keeps it so.
    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        process.wait()
    except KeyboardInterrupt:
        return
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    raise DevChainError(f"the local chain exited by itself (exit code {process.returncode})")


# ---- the dev chain's clock: Anvil mines on demand, and moves its time when told


def time_travel(w3, seconds: int) -> int:
    """Move the dev chain's clock `seconds` ahead and mine a block at that time; returns its timestamp."""
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])
    return w3.eth.get_block("latest")["timestamp"]


@contextmanager
def keep_mining(w3, interval: float = 1.0) -> Iterator[None]:
    """Mine an empty block every `interval` seconds while inside (Anvil mines only on transactions
    otherwise), so that blocks keep passing epoch ends as on a live chain."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # the chain is going away with the test
                w3.provider.make_request("evm_mine", [])

    thread = threading.Thread(target=run, name="anvil-miner", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def mine(w3, blocks: int = 1) -> None:
    """Mine `blocks` empty blocks, each a second after the previous one."""
    for _ in range(blocks):
        time_travel(w3, 1)
