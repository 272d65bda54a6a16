"""Test doubles beside the code: a freshly deployed dev chain, snapshots to undo a test's changes, roots
settled in one call, and an RPC URL nobody serves.

For tests and demos only: every key here is a well-known development key.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.deploy import Deployment, deploy_system, deployment_path
from chain.devchain import DevChain, dev_genesis_validators, open_devchain, time_travel
from chain.transactions import connect


@dataclass(frozen=True)
class DeployedChain:
    """An Anvil chain with the whole system deployed by its first key; the others are funded demo accounts,
    the dev genesis validators (keys 1, 2 and 3) among them."""

    dev: DevChain
    w3: Any
    deployment: Deployment
    path: Path
    """The deployment file."""

    @property
    def rpc_url(self) -> str:
        return self.dev.rpc_url

    @property
    def keys(self) -> tuple[str, ...]:
        return self.dev.private_keys


@contextmanager
def open_deployed_chain(data_dir: Path, *, accounts: int = 10, **options: Any) -> Iterator[DeployedChain]:
    """Start Anvil, deploy everything (demo accounts: all but the deployer), yield, stop Anvil. `options`
    go to `deploy_system` (e.g. keeper=ADDRESS)."""
    from eth_account import Account

    with open_devchain(accounts=accounts) as dev:
        w3 = connect(dev.rpc_url)
        path = deployment_path(Path(data_dir), dev.chain_id)
        demo = [Account.from_key(key).address for key in dev.private_keys[1:]]
        deployment = deploy_system(
            w3,
            dev.private_keys[0],
            genesis_validators=dev_genesis_validators(),
            path=path,
            demo_accounts=demo,
            **options,
        )
        yield DeployedChain(dev, w3, deployment, path)


@contextmanager
def reverted(w3) -> Iterator[None]:
    """Whatever happens on the dev chain inside (blocks, balances, its clock) is undone on the way out:
    tests that share one deployment each start from it, in any order.

    Anvil restarts its clock at the snapshot's block time, so a chain shared for minutes would fall that
    far behind the wall clock that daemons and receipts go by; the clock is set to where it would be now,
    as far ahead of the wall clock as it was when the snapshot was taken."""
    ahead = max(0.0, w3.eth.get_block("latest")["timestamp"] - time.time())
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        yield
    finally:
        if not w3.provider.make_request("evm_revert", [snapshot]).get("result"):
            raise RuntimeError(f"the dev chain could not go back to snapshot {snapshot}")
        w3.provider.make_request("evm_setTime", [math.ceil(time.time() + ahead)])


def unserved_rpc_url() -> str:
    """An http URL on a loopback port that was free a moment ago and that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def settle_root(validators, epoch: int, tree, next_set=None) -> None:
    """Have every validator client sign `tree`'s root for `epoch` with `next_set` (default: the current set
    carried forward), propose it, wait the delay, activate."""
    relay = validators[0]
    next_set = next_set or relay.validator_set()
    deadline = relay.chain_time() + 3600
    signatures = [validator.sign_epoch_root(epoch, tree, deadline, next_set) for validator in validators]
    activates_at = relay.propose_root(epoch, tree, deadline, signatures, next_set)
    time_travel(relay.w3, activates_at - relay.chain_time())
    relay.activate_root(epoch)
