"""`dolphin demo`: the whole network as separate processes on this machine, a cheater caught, money settled.

It starts the real programs, each an OS process with its own data dir under the run folder: Anvil with
every contract and the Uniswap pair; `dolphin relay`; three `dolphin node`s (one with no listen address,
reachable only through the relay, and one direct, both registered by a bonded operator; and a cheater
registered by another bonded operator, serving half of the model it announces: `cli.demo_cheater`, code
only the demo runs); two `dolphin validator`s of the genesis set (100,000+ POD bonded each, two of the
three members, which is a quorum); and `dolphin gateway` paying with an API user's deposited credit.

Then, narrated step by step: the user asks through the gateway with the official `openai` client (pinned
to the relay-only node, so the encrypted answer crosses the relay); the validators sample every node and
the cheater is struck, banned (the gateway refuses to route to it) and slashed on chain, the reporting
validator paid its cut; the validators close the epoch by their own schedule (root signed by the quorum,
the user's credit debited) and the operator claims liquid; a second paid answer in the next epoch, whose
root the operator claims bonded, with the bonus; the validator holding the keeper role buys back POD with
the revenue and stkPOD's share price rises. The demo moves only the dev chain's clock, past the root
timelock and the TWAP window, which a live network waits out. Everything it started is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import click
import trio
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chain.client import USD_DECIMALS, ChainClient, MoneyStatus, bond_validators, format_units
from chain.deploy import deploy_system, deployment_path
from chain.devchain import (
    DEV_MNEMONIC,
    dev_genesis_validators,
    dev_private_keys,
    keep_mining,
    open_devchain,
    time_travel,
)
from chain.merkle import RewardsTree
from chain.rewards import POD
from chain.transactions import connect
from node.config import CONFIG_FILE as NODE_CONFIG_FILE
from node.config import NodeConfig
from node.config import render_config as render_node_config
from node.errors import ModelError
from node.ledger import read_ledger
from node.models import build_tiny_model, import_smollm2, load_manifest, verify_model_dir
from node.processes import node_process
from node.registration import register_node
from p2p import HostConfig, open_host
from p2p.processes import DaemonProcess, relay_process
from pool.gateway_config import CONFIG_FILE as GATEWAY_CONFIG_FILE
from pool.gateway_config import GatewayConfig
from pool.gateway_config import render_config as render_gateway_config
from pool.validator_peers import fetch_rewards_tree
from protocols import envelope
from protocols.eth import EthAccount
from protocols.keys import peer_id_from_public_key, peer_id_to_text
from protocols.messages import BanNotice
from runtime.files import write_atomically
from validator.config import DEV_SETTLEMENT
from validator.processes import validator_process
from validator.state import read_state

__all__ = ["DemoFailed", "command", "run_demo"]

DEFAULT_PROMPT = "In one sentence, what is a dolphin?"
SECOND_PROMPT = "Name one ocean."
RUNNING_VALIDATORS = (1, 2)  # dev accounts; the genesis set is 1, 2 and 3: two of three are a quorum
OPERATOR_KEY = 4  # bonded operator of the relay-only node and the direct node
USER_KEY = 5  # the API user, with deposited credit
CHEATER_KEY = 6  # bonded operator of the cheating node
OPERATOR_BOND = 20_000 * POD
USER_CREDIT = 10 * 10**USD_DECIMALS  # 10 lUSD
STEP_TIMEOUT_S = 300.0
# Wide enough for full addresses when the output is a log or a CI page rather than a terminal.
console = Console(width=None if sys.stdout.isatty() else 120)
T = TypeVar("T")


class DemoFailed(click.ClickException):
    """A step did not happen within its time; the message says which, and where the logs are."""


@dataclass(frozen=True)
class Timings:
    """The demo's local-network cadence for one model (epochs of seconds, not a day)."""

    epoch_seconds: int
    challenge_tokens: int


TIMINGS = {"tiny": Timings(epoch_seconds=20, challenge_tokens=16), "smollm2": Timings(45, 24)}


@dataclass
class Summary:
    """What `--summary-json` writes (field names are part of the interface)."""

    answer: str = ""
    processes: int = 0
    cheater: dict[str, Any] = field(default_factory=dict)
    credits_debited: str = "0"
    buyback_pod: str = "0"
    stkpod_price_before: str = ""
    stkpod_price_after: str = ""
    claims: dict[str, str] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)
    reporter: str = ""
    steps_failed: list[str] = field(default_factory=list)


def _step(number: int, title: str) -> None:
    console.rule(f"[bold cyan]{number}. {title}")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = STEP_TIMEOUT_S) -> T:
    """Poll `probe` (a blocking call) every half second until it returns something truthy."""
    deadline = time.monotonic() + timeout
    with console.status(f"waiting: {what}"):
        while time.monotonic() < deadline:
            with contextlib.suppress(ConnectionError, OSError):
                if found := probe():
                    return found
            time.sleep(0.5)
    raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def prepare_model(model: str, models_dir: Path) -> Path:
    """The model folder: built or imported once into `models_dir`, verified on every later run."""
    folder = models_dir / model
    try:
        manifest = verify_model_dir(folder)
        console.print(f"Verified {manifest.name} in {folder} ({len(manifest.files)} files)")
        return folder
    except ModelError:
        pass
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with console.status(f"Preparing {model} in {folder} (once; later runs reuse it)..."):
        manifest = build_tiny_model(folder) if model == "tiny" else import_smollm2(folder)
    console.print(f"Prepared {manifest.name} in {folder}")
    return folder


def _price(client: ChainClient) -> str:
    """stkPOD's assets per share, as "POD wei/share units" (10**24 shares are one stkPOD)."""
    return f"{client.money_status().share_price}/{10**24}"


class Processes:
    """The OS processes the demo started; `stop_all` ends every one (and says if any would not)."""

    def __init__(self) -> None:
        self.started: list[DaemonProcess] = []

    def launch(self, process: DaemonProcess) -> DaemonProcess:
        self.started.append(process)
        return process

    def wait_ready(self, names: dict[str, DaemonProcess], timeout: float = STEP_TIMEOUT_S) -> None:
        """Wait for each process's ready.json, with a progress bar; DemoFailed (with its log) otherwise."""
        columns = (
            TextColumn("{task.description:<40}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} ready"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("starting processes", total=len(names))
            for name, process in names.items():
                progress.update(task, description=f"starting {name}")
                try:
                    trio.run(process.wait_ready, timeout)
                except (RuntimeError, trio.TooSlowError) as exc:
                    log = process.data_dir / "peer.log"
                    raise DemoFailed(
                        f"{name} did not start: {exc}\n{process.log_tail(3000)}\nlog: {log}"
                    ) from None
                progress.advance(task)
        for name, process in names.items():
            console.print(f"{name:<24} pid {process.process.pid:<7} peer {process.peer_id}")

    def stop_all(self) -> int:
        """SIGTERM each (the daemons drain), newest first; returns how many are still alive after."""
        for process in reversed(self.started):
            process.stop()
        return sum(process.alive() for process in self.started)


def _write_key(path: Path, key: str) -> Path:
    write_atomically(path, (key + "\n").encode(), mode=0o600)
    return path


def _node_settings(data_dir: Path, model_dir: Path, timings: Timings) -> None:
    """The node's config file, as an operator writes it: the dev network's epoch, a quick benchmark."""
    config = NodeConfig(
        data_dir=data_dir,
        model=model_dir,
        heartbeat_interval=1.0,
        epoch_seconds=timings.epoch_seconds,
        receipt_submit_seconds=2.0,
        benchmark_prompt_tokens=32,
        benchmark_output_tokens=8,
        benchmark_streams=2,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / NODE_CONFIG_FILE).write_text(render_node_config(config))


@dataclass
class Network:
    """The chain clients and processes of one demo run."""

    rpc_url: str
    deployment_file: Path
    reader: ChainClient
    operator: ChainClient
    cheater_operator: ChainClient
    user: ChainClient
    model_dir: Path
    model_name: str
    # The processes, set by `start_network` as it launches them.
    relay: DaemonProcess = field(init=False)
    hidden: DaemonProcess = field(init=False)
    direct: DaemonProcess = field(init=False)
    cheater: DaemonProcess = field(init=False)
    validators: list[DaemonProcess] = field(default_factory=list)
    gateway: DaemonProcess = field(init=False)

    @property
    def chain_args(self) -> tuple[str, ...]:
        return ("--rpc-url", self.rpc_url, "--deployment", str(self.deployment_file))


def deploy(rpc_url: str, keys: tuple[str, ...], run_dir: Path, summary: Summary) -> tuple[Path, list]:
    """Every contract and the Uniswap pair on the chain at `rpc_url`; the genesis validators, operators
    and the user staked, bonded and funded. Returns the deployment file and a client per dev key."""
    w3 = connect(rpc_url)
    columns = (
        TextColumn("{task.description:<48}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    chain_id = w3.eth.chain_id
    path = deployment_path(run_dir / "chain", chain_id)
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("deploying", total=None)

        def on_step(index: int, total: int, description: str) -> None:
            progress.update(task, description=description, completed=index, total=total)

        keeper = dev_genesis_validators()[0]
        demo_accounts = [
            "0x" + EthAccount(bytes.fromhex(k.removeprefix("0x"))).address.hex() for k in keys[1:]
        ]
        deployment = deploy_system(
            w3,
            keys[0],
            genesis_validators=dev_genesis_validators(),
            path=path,
            demo_accounts=demo_accounts,
            keeper=keeper,
            on_step=on_step,
        )
        progress.update(task, description="deployed", completed=progress.tasks[0].total)
    console.print(f"chain {chain_id} at {rpc_url}: {len(deployment.addresses)} contracts and the pair")
    clients = [ChainClient(rpc_url, deployment, key) for key in keys]
    bond_validators(clients[1:4])
    console.print(
        "genesis validators "
        + ", ".join(c.address for c in clients[1:4])
        + " bonded 150,000 POD each; the first holds the buyback keeper role"
    )
    for index in (OPERATOR_KEY, CHEATER_KEY):
        clients[index].stake(OPERATOR_BOND)
        clients[index].bond()
    console.print(f"operator {clients[OPERATOR_KEY].address} and operator {clients[CHEATER_KEY].address}")
    console.print(f"  bonded {format_units(OPERATOR_BOND, 18)} POD each")
    clients[USER_KEY].credits_deposit(USER_CREDIT)
    console.print(
        f"API user {clients[USER_KEY].address} deposited {format_units(USER_CREDIT, USD_DECIMALS)} lUSD"
    )
    summary.stkpod_price_before = _price(clients[0])
    return path, clients


def start_network(net: Network, processes: Processes, run_dir: Path, timings: Timings, keys) -> None:
    """Relay first (everyone bootstraps from it), then the validators, nodes and gateway at once."""
    peers = run_dir / "peers"
    net.relay = processes.launch(relay_process(peers / "relay"))
    processes.wait_ready({"relay": net.relay})
    bootstrap = ("--bootstrap", net.relay.addr)
    for index in RUNNING_VALIDATORS:
        data_dir = peers / f"validator-{index}"
        key = _write_key(data_dir / "validator.key", keys[index])
        settings = {
            **DEV_SETTLEMENT,
            "epoch_seconds": timings.epoch_seconds,
            "base_per_hour": 720.0,  # every node every few seconds: a demo's pace, not a network's
            "max_per_hour": 3600.0,
            "concurrency": 2,
            "challenge_max_tokens": timings.challenge_tokens,
            "standing_interval": 5.0,
            "chain_refresh": 5.0,
        }
        net.validators.append(
            processes.launch(
                validator_process(
                    data_dir, net.model_dir, "--key-file", str(key), *bootstrap, *net.chain_args,
                    settings=settings,
                )
            )
        )  # fmt: skip
    owners = {"hidden": net.operator, "direct": net.operator, "cheater": net.cheater_operator}
    for name, operator in owners.items():
        data_dir = peers / f"node-{name}"
        _node_settings(data_dir, net.model_dir, timings)
        register_node(data_dir, operator)
        program = ("cli.demo_cheater", "-v", "node") if name == "cheater" else ("cli.main", "-v", "node")
        process = node_process(
            data_dir, net.model_dir, *bootstrap, *net.chain_args, listen=name != "hidden", program=program
        )
        setattr(net, name, processes.launch(process))
    user_key = _write_key(peers / "gateway" / "user.key", keys[USER_KEY])
    # The gateway re-reads registrations, bonds and the user's credit every few seconds, not every 30.
    gateway_config = GatewayConfig(data_dir=peers / "gateway", chain_refresh_seconds=2.0)
    (peers / "gateway" / GATEWAY_CONFIG_FILE).write_text(render_gateway_config(gateway_config))
    net.gateway = processes.launch(
        DaemonProcess(
            peers / "gateway",
            [*bootstrap, "--http", "127.0.0.1:0", "--model", net.model_name, "--key-file", str(user_key),
             *net.chain_args],
            program=("cli.main", "-v", "gateway"),
        )
    )  # fmt: skip
    processes.wait_ready(
        {
            **{f"validator {index}": v for index, v in zip(RUNNING_VALIDATORS, net.validators, strict=True)},
            "node (relay only)": net.hidden,
            "node (direct)": net.direct,
            "node (cheater)": net.cheater,
            "gateway": net.gateway,
        }
    )
    console.print(f"the relay-only node has no listen address: {net.hidden.ready['circuit_addrs'][0]}")


def _openai_client(net: Network):
    import openai

    return openai.OpenAI(
        base_url=net.gateway.ready["http"] + "/v1", api_key="demo", max_retries=0, timeout=120
    )


def _pool_size(net: Network) -> int:
    models = _openai_client(net).models.list().data
    return models[0].model_dump().get("nodes", 0) if models else 0


def ask(net: Network, prompt: str, node: DaemonProcess, *, show: bool) -> str:
    """One streamed chat answer through the gateway, pinned to `node`; returns the text."""
    client = _openai_client(net)
    if show:
        console.print(Panel(prompt, title="prompt (sealed end to end to the node's X25519 key)"))
    stream = client.chat.completions.create(
        model=net.model_name,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=48,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"provider": {"only": [node.peer_id], "bonded_only": True}},
    )
    pieces = []
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if show:
                console.print(chunk.choices[0].delta.content, end="", highlight=False, markup=False)
        usage = chunk.usage or usage
    if show:
        console.print()
        if usage is not None:
            console.print(
                f"usage from the node's signed receipt: {usage.prompt_tokens} + {usage.completion_tokens}"
            )
    return "".join(pieces)


def _strikes_and_ban(validator: DaemonProcess, peer_id: str) -> tuple[int, bool]:
    async def read(state):
        strikes = [s for s, *_ in await state.strikes() if _peer(s.node_key) == peer_id]
        notices = [
            envelope.open_signed(raw, BanNotice, check_time=False).message for raw in await state.bans()
        ]
        banned = any(_peer(notice.node_key) == peer_id for notice in notices)
        return len(strikes), banned

    return trio.run(read_state, validator.data_dir, read)


def _peer(node_key: bytes) -> str:
    return peer_id_to_text(peer_id_from_public_key(node_key))


def catch_the_cheater(net: Network, summary: Summary) -> None:
    operator = net.cheater_operator
    bonded = operator.bonding.slashable_of(operator.address)

    def slashed():
        events = net.reader.events("Slashing", "StrikeExecuted")
        return next((e for e in events if e["args"]["offender"] == operator.address), None)

    event = wait_for("the validators to sample, strike, ban and slash the cheater", slashed)
    shares, reporter = event["args"]["shares"], event["args"]["reporter"]
    slashed_pod = net.reader.staked_pod.convert_to_assets(shares)
    remaining = operator.bonding.slashable_of(operator.address)
    strikes, banned = 0, True
    for validator in net.validators:
        count, ban = _strikes_and_ban(validator, net.cheater.peer_id)
        strikes, banned = strikes + count, banned and ban
    console.print(f"strikes about {net.cheater.peer_id}: {strikes} (teacher-forced fingerprint)")
    console.print(f"banned by every running validator: {banned}")
    console.print(
        f"slashed on chain: {format_units(slashed_pod, 18)} POD of its operator's bond "
        f"({format_units(bonded, 24)} -> {format_units(remaining, 24)} stkPOD bonded); "
        f"the reporting validator {reporter} paid {format_units(event['args']['reporterShares'], 24)} stkPOD"
    )
    from openai import APIStatusError

    try:
        ask(net, SECOND_PROMPT, net.cheater, show=False)
        routed = True
    except APIStatusError as exc:
        routed = False
        console.print(f"the gateway refuses to route to it: {exc.status_code} {exc.message[:80]}")
    summary.cheater = {
        "peer_id": net.cheater.peer_id,
        "struck": strikes > 0,
        "strikes": strikes,
        "banned": banned and not routed,
        "slashed_pod": str(slashed_pod),
    }
    summary.reporter = reporter
    if not (strikes and banned and not routed):
        raise DemoFailed("the cheater was slashed but not struck and banned everywhere")


def _epoch_now(timings: Timings) -> int:
    return int(time.time()) // timings.epoch_seconds


def _paid_epoch(node: DaemonProcess) -> int:
    """The epoch of the newest paid receipt `node` stored: the one its last answer is settled in. Not the
    epoch the question was asked in: on a loaded machine the node may start it seconds later, past an
    epoch's end (the demo's epochs are seconds long)."""
    rows = trio.run(read_ledger, node.data_dir, lambda ledger: ledger.receipts())
    paid = [row for row in rows if row.client is not None]
    if not paid:
        raise DemoFailed(f"the node {node.peer_id} stored no paid receipt for the answer")
    return paid[-1].epoch


def _fresh_epoch(timings: Timings, margin: float = 8.0) -> int:
    """The current epoch, after waiting for the next one if fewer than `margin` seconds are left."""
    left = timings.epoch_seconds - time.time() % timings.epoch_seconds
    if left < margin:
        with console.status("waiting for the next epoch to begin"):
            time.sleep(left + 0.5)
    return _epoch_now(timings)


def settle(net: Network, epoch: int, timings: Timings) -> RewardsTree:
    """Wait for the validators to close `epoch` and propose its root; pass the timelock; activate."""
    reader = net.reader
    ends_in = (epoch + 1) * timings.epoch_seconds - time.time()
    console.print(
        f"epoch {epoch} ends in {max(ends_in, 0):.0f} s; the validators close it after a short grace"
    )
    wait_for(f"the root of epoch {epoch}, signed by a quorum", lambda: reader.root_status(epoch)[0] != "none")
    [proposed] = reader.events("RewardsDistributor", "RootProposed", {"epoch": epoch})
    console.print(f"root 0x{bytes(proposed['args']['root']).hex()} proposed, signed by a quorum")
    time_travel(connect(net.rpc_url), reader.deployment.params["root_delay"] + 1)
    console.print(
        f"(the demo moves the dev chain's clock {reader.deployment.params['root_delay']} s past the timelock)"
    )
    wait_for(f"the activation of epoch {epoch}'s root", lambda: reader.root_status(epoch)[0] == "activated")
    tree = trio.run(_fetch_tree, net, epoch, bytes(proposed["args"]["root"]))
    console.print(
        f"the operator fetched the tree from the validators ({len(tree.amounts)} accounts, root checked)"
    )
    return tree


def debited_below(net: Network, credit: int) -> int:
    """The user's credit once the validators settled an epoch's debit batch (it falls below `credit`)."""

    def lower() -> tuple[int] | None:
        now = net.user.credits.credit_of(net.user.address)
        return (now,) if now < credit else None  # (a credit of 0 is an answer too)

    return wait_for("the quorum-signed debit of the user's credit", lower)[0]


def buy_back(net: Network, rounds: int = 4) -> MoneyStatus:
    """Wait for the keeper's buyback. Its TWAP needs two observations a window apart (the demo's clock
    jumps made the last one stale), so the dev chain's clock moves a window ahead each round."""
    window = net.reader.buyback.twap_window()
    console.print(
        f"(the keeper measures a {window // 60}-minute TWAP: the demo moves the clock past the window)"
    )

    def bought() -> MoneyStatus | None:
        status = net.reader.money_status()
        return status if status.awaiting_buyback == 0 and status.pod_bought_back > 0 else None

    for _ in range(rounds - 1):
        time_travel(connect(net.rpc_url), window)
        with contextlib.suppress(DemoFailed):
            return wait_for("the keeper's observation and buyback", bought, timeout=20)
    time_travel(connect(net.rpc_url), window)
    return wait_for("the keeper's buyback", bought, timeout=60)


async def _fetch_tree(net: Network, epoch: int, root: bytes) -> RewardsTree:
    """What `dolphin chain claim --bootstrap` does: the tree from any validator, its root checked."""
    with tempfile.TemporaryDirectory(prefix="dolphin-claim-") as data_dir:
        config = HostConfig.light_client(Path(data_dir), bootstrap=(net.relay.addr,))
        async with open_host(config) as host:
            return await fetch_rewards_tree(host, epoch, root, timeout=STEP_TIMEOUT_S)


def run_demo(
    models_dir: Path,
    run_dir: Path,
    model: str,
    prompt: str,
    summary: Summary,
    rpc_url: str | None = None,
) -> None:
    """The whole story (module docstring), its outcome in `summary`; raises DemoFailed naming the step
    that did not happen."""
    timings = TIMINGS[model]
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    console.print(
        Panel(
            "A local Dolphin network on this machine, every part its own OS process: Anvil with the "
            "contracts, a relay, three nodes (one cheating), two validators and an OpenAI-compatible "
            "gateway. Nothing leaves the machine; nothing is mocked.",
            title="dolphin demo",
        )
    )
    processes = Processes()
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: _stop(processes, summary))
        _step(1, "Chain: Anvil, every contract and the Uniswap pair; stake, bonds and credit")
        if rpc_url is None:
            dev = stack.enter_context(open_devchain())
            rpc_url, keys, chain_processes = dev.rpc_url, dev.private_keys, 1
        else:
            keys, chain_processes = tuple(dev_private_keys(10)), 0
            console.print(f"using the dev chain at {rpc_url} (mnemonic: {DEV_MNEMONIC[:18]}…)")
        # Blocks every second besides the transactions', as on a live chain: validators close an epoch at
        # the first block past its end.
        stack.enter_context(keep_mining(connect(rpc_url), 1.0))
        deployment_file, clients = deploy(rpc_url, keys, run_dir, summary)

        _step(2, f"Model: {model}")
        model_dir = prepare_model(model, models_dir)
        net = Network(
            rpc_url, deployment_file, clients[0], clients[OPERATOR_KEY], clients[CHEATER_KEY],
            clients[USER_KEY], model_dir, load_manifest(model_dir).name,
        )  # fmt: skip

        _step(3, "Processes: relay, two validators, three nodes (one cheating), the gateway")
        start_network(net, processes, run_dir, timings, keys)
        summary.processes = chain_processes + len(processes.started)
        wait_for("the gateway to see the pool", lambda: _pool_size(net) >= 3, timeout=120)

        _step(4, "An API user asks through the gateway with the openai client, across the relay")
        credit_before = net.user.credits.credit_of(net.user.address)
        _fresh_epoch(timings)
        summary.answer = ask(net, prompt, net.hidden, show=True)
        epoch = _paid_epoch(net.hidden)
        summary.epochs.append(epoch)

        _step(5, "Validators sample every node: the cheater is struck, banned and slashed")
        catch_the_cheater(net, summary)

        _step(6, "The epoch closes by the validators' schedule; the operator claims liquid")
        tree = settle(net, epoch, timings)
        credit = debited_below(net, credit_before)
        console.print(
            f"the user's credit was debited {format_units(credit_before - credit, USD_DECIMALS)} lUSD "
            "into the buyback: the price of a million tokens x its receipts' tokens"
        )
        liquid = net.operator.claim(tree)
        summary.claims["liquid"] = str(liquid.amount)
        console.print(f"operator claimed {format_units(liquid.amount, 18)} POD liquid")

        _step(7, "A second paid answer next epoch; its root claimed bonded, with the bonus")
        second = _fresh_epoch(timings)
        while second <= epoch:
            time.sleep(1)
            second = _fresh_epoch(timings)
        ask(net, SECOND_PROMPT, net.direct, show=True)
        second = _paid_epoch(net.direct)
        summary.epochs.append(second)
        tree = settle(net, second, timings)
        debited = credit_before - debited_below(net, credit)
        summary.credits_debited = str(debited)
        console.print(f"the user's credit was debited {format_units(debited, USD_DECIMALS)} lUSD in all")
        bonded = net.operator.claim(tree, bonded=True)
        summary.claims["bonded"] = str(bonded.amount)
        summary.claims["bonus"] = str(bonded.bonus)
        console.print(
            f"operator claimed {format_units(bonded.amount, 18)} POD bonded, "
            f"plus a {format_units(bonded.bonus, 18)} POD bonus"
        )

        _step(8, "The keeper buys back POD with the revenue; stkPOD's share price rises")
        status = buy_back(net)
        summary.buyback_pod = str(status.pod_bought_back)
        console.print(f"bought back {format_units(status.pod_bought_back, 18)} POD for the stakers")
        vesting = net.reader.staked_pod.rewards_vesting_period()
        time_travel(connect(rpc_url), vesting)
        console.print(
            f"(the POD vests to stakers over {vesting // 86400} days: the demo moves the clock past it)"
        )
        summary.stkpod_price_after = _price(net.reader)
        if _pod_per_stkpod(summary.stkpod_price_after) <= _pod_per_stkpod(summary.stkpod_price_before):
            raise DemoFailed("stkPOD's share price did not rise with the buyback")
        _final_table(summary)


def _stop(processes: Processes, summary: Summary) -> None:
    with console.status("stopping every process the demo started"):
        alive = processes.stop_all()
    if alive:
        summary.steps_failed.append(f"{alive} processes would not stop")
        console.print(f"[red]{alive} processes would not stop")
    else:
        console.print(f"stopped all {len(processes.started)} peer processes and the chain")


def _final_table(summary: Summary) -> None:
    before = _pod_per_stkpod(summary.stkpod_price_before)
    after = _pod_per_stkpod(summary.stkpod_price_after)
    table = Table(title="dolphin demo")
    table.add_column("what")
    table.add_column("outcome", overflow="fold")
    rows = [
        ("OS processes started", str(summary.processes)),
        ("answer", summary.answer.strip()[:200]),
        ("cheater", summary.cheater["peer_id"]),
        ("  struck / banned", f"{summary.cheater['strikes']} strikes / {summary.cheater['banned']}"),
        ("  slashed", f"{format_units(int(summary.cheater['slashed_pod']), 18)} POD"),
        ("epochs settled", ", ".join(map(str, summary.epochs))),
        ("credit debited", f"{format_units(int(summary.credits_debited), USD_DECIMALS)} lUSD"),
        ("claimed liquid", f"{format_units(int(summary.claims['liquid']), 18)} POD"),
        ("claimed bonded (+bonus)", f"{format_units(int(summary.claims['bonded']), 18)} "
         f"(+{format_units(int(summary.claims['bonus']), 18)}) POD"),
        ("POD bought back", f"{format_units(int(summary.buyback_pod), 18)} POD"),
        ("stkPOD price", f"{float(before):.15f} -> {float(after):.15f} POD per stkPOD "
         f"(+{float((after / before - 1) * 10**9):.2f} ppb)"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _pod_per_stkpod(price: str) -> Fraction:
    """POD per whole stkPOD from "POD wei/shares" (10**24 shares are one stkPOD, 10**18 wei one POD)."""
    numerator, _, denominator = price.partition("/")
    return Fraction(int(numerator), int(denominator)) * 10**6


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _run_dir(work_dir: Path, keep: bool) -> Iterator[Path]:
    if keep:
        path = work_dir / time.strftime("run-%Y%m%d-%H%M%S")
        path.mkdir(parents=True)
        yield path
        return
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="run-") as temporary:
        yield Path(temporary)


@click.command("demo")
@click.option(
    "--model",
    type=click.Choice(["smollm2", "tiny"]),
    default="smollm2",
    show_default=True,
    help="smollm2: SmolLM2-135M-Instruct (real answers); tiny: the random test Llama (fast).",
)
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=True, help="What the API user asks.")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".devdata/demo"),
    show_default=True,
    envvar="DOLPHIN_DEMO_DIR",
    help="Model folders are kept here between runs; each run's processes get a fresh folder in it.",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the outcome here as JSON (answer, processes, cheater, credits, buyback, prices, claims).",
)
@click.option(
    "--rpc-url",
    help="Deploy onto this running dev chain (Anvil with the dev mnemonic) instead of starting one.",
)
@click.option("--keep-logs", is_flag=True, help="Keep the run folder (every process's data dir and log).")
def command(
    model: str, prompt: str, work_dir: Path, summary_json: Path | None, rpc_url: str | None, keep_logs: bool
) -> None:
    """Run the whole network as separate processes: an encrypted answer through the gateway, a cheater
    caught and slashed, two epochs settled and claimed, revenue bought back. Exits non-zero if any step
    did not happen."""
    (work_dir / "models").mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so every process the demo started is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    summary = Summary()
    try:
        with _run_dir(work_dir, keep_logs) as run_dir:
            run_demo(work_dir / "models", run_dir, model, prompt, summary, rpc_url)
    except DemoFailed as exc:
        summary.steps_failed.append(exc.message)
        raise
    finally:
        if summary_json is not None:
            summary_json.write_text(json.dumps(summary.__dict__, indent=2) + "\n")
    if summary.steps_failed:
        raise DemoFailed("; ".join(summary.steps_failed))
    console.rule("[bold green]done")
