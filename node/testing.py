"""Test helpers shipped beside the node: a real `dolphin node` process, and finding it from a client.

    node = node_process(tmp_path / "node", model_dir, "--bootstrap", relay.addr)
    await node.wait_ready(timeout=120)
    view = await watch_pool(client_host, model_id)
    member = await find_member(client_host, view, node.peer_id)
    completion = await complete(client_host, member.contact, [("user", "hi")], identity=Identity.generate())

The process is the real command line (`python -m cli.main node`), bound to 127.0.0.1, its local API on a
free port, waited on through ready.json; its output goes to <data dir>/peer.log.
"""

from __future__ import annotations

from pathlib import Path

from p2p import DolphinHost
from p2p.testing import LOCALHOST, PeerProcess
from pool import PoolView, find_member
from protocols.eth import TypedDomain
from protocols.ids import pool_topic

__all__ = ["find_member", "node_process", "watch_pool"]

# Pool views check operator bindings against the Bonding contract's domain; nodes in these tests are
# unregistered (no binding) unless a test registers them on its own chain.
UNCHECKED_DOMAIN = TypedDomain("Dolphin Network", "1", 31337, b"\0" * 20)


def node_process(
    data_dir: Path,
    model_dir: Path,
    *args: str,
    listen: bool = True,
    program: tuple[str, ...] = ("cli.main", "-v", "node"),
) -> PeerProcess:
    """`dolphin node` serving `model_dir` from `data_dir`; `args` are more options (e.g. --bootstrap).
    `program` runs another entry point with the node's command line (tests' cheating nodes)."""
    listen_args = ["--listen", LOCALHOST] if listen else ["--no-listen"]
    return PeerProcess(
        data_dir,
        [
            "--model",
            str(model_dir),
            *listen_args,
            "--local-api",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "0.5",
            *args,
        ],
        program=program,
    )


async def watch_pool(
    client: DolphinHost, model: bytes, *, binding_domain: TypedDomain = UNCHECKED_DOMAIN
) -> PoolView:
    """Subscribe `client` to `model`'s pool topic (once per client and model); returns the pool view."""
    view = PoolView(model, binding_domain)
    await client.gossip.subscribe(pool_topic(model), view.validate)
    return view
