"""Helpers of the validator tests that run `dolphin validator` and `dolphin node` as processes (on Anvil or
not): start them so that a failure prints their logs and nothing outlives the test, read their /metrics,
and set up the dev chain's genesis validators and a bonded operator the way an operator would."""

import contextlib
import os
from pathlib import Path

import httpx
import trio

from chain.client import ChainClient
from node.processes import node_process
from p2p.processes import stop_all
from validator.processes import validator_process

__all__ = [
    "FAST_SAMPLING",
    "bonded_operator",
    "chain_args",
    "chain_node",
    "chain_validator",
    "metric",
    "ready",
    "started_processes",
]

FAST_SAMPLING = ("--base-per-hour", "3600", "--max-per-hour", "7200", "--concurrency", "3")
OPERATOR_KEY = 4  # the dev chain's account that operates the node under test
OPERATOR_STAKE = 200_000 * 10**18


@contextlib.contextmanager
def started_processes():
    """A list for the processes started in the block: on a failure their logs are printed, and they are
    stopped together when the block ends."""
    started = []
    try:
        yield started
    except BaseException:
        for process in started:
            print(f"--- {process.data_dir}\n{process.log_tail(4000)}")
        raise
    finally:
        stop_all(reversed(started))


async def ready(processes, process, timeout=240.0):
    """`process`, added to `processes` (so it is stopped) and waited for until it is ready."""
    processes.append(process)
    await process.wait_ready(timeout)
    return process


def metric(process, name: str, **labels: str) -> float:
    """A counter or gauge from the process's /metrics (0 when absent)."""
    text = httpx.get(process.ready["metrics"], timeout=10).text
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series in (name, f"{name}{{{wanted}}}"):
            return float(value)
    return 0.0


def chain_args(chain) -> tuple[str, ...]:
    """The options that point a daemon at `chain` (chain.testing's deployed chain)."""
    return ("--rpc-url", chain.rpc_url, "--deployment", str(chain.path))


def chain_validator(data_dir: Path, chain, index: int, model_dir: Path, relay, *args: str, settings=None):
    """`dolphin validator` in `data_dir` with the dev chain's key `index` (1 to 3: the genesis validator
    set) as its wallet, on `chain` and bootstrapped from `relay`; `args` are more options. A restart in the
    same folder keeps its state and waits for a fresh ready.json."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "validator.key").write_text(chain.keys[index] + "\n")
    os.chmod(data_dir / "validator.key", 0o600)
    (data_dir / "ready.json").unlink(missing_ok=True)
    return validator_process(
        data_dir, model_dir, "--bootstrap", relay.addr, *chain_args(chain), *args, settings=settings
    )


def chain_node(node_dir: Path, model_dir: Path, relay, chain, program: tuple[str, ...] | None = None):
    """`dolphin node` (or the wrapped node `program`) on `chain`, bootstrapped from `relay`."""
    extra = {"program": program} if program is not None else {}
    return node_process(node_dir, model_dir, "--bootstrap", relay.addr, *chain_args(chain), **extra)


async def bonded_operator(chain) -> tuple[ChainClient, int]:
    """The operator's account, staked and bonded, and its slashable bond in POD wei."""
    operator = ChainClient(chain.rpc_url, chain.deployment, chain.keys[OPERATOR_KEY])
    await trio.to_thread.run_sync(lambda: operator.stake(OPERATOR_STAKE))
    await trio.to_thread.run_sync(operator.bond)
    bonded = await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address)
    return operator, bonded
