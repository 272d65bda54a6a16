"""Test helpers shipped beside the node: a real `dolphin node` process, and finding it from a client.

    node = node_process(tmp_path / "node", model_dir, "--bootstrap", relay.addr)
    await node.wait_ready(timeout=120)
    view = await watch_pool(client_host, model_id)
    member = await find_member(client_host, view, node.peer_id)
    completion = await complete(client_host, member.contact, [("user", "hi")], identity=Identity.generate())

`LongAnswers(engine)` wraps a real engine so that every answer runs to its max_tokens (ignore_eos): a
test that leaves an answer early can then tell a stopped generation from one that ended by itself.

The process is the real command line (`python -m cli.main node`, `node.processes.node_process`, which the
demo uses too), bound to 127.0.0.1, its local API on a free port, waited on through ready.json; its output
goes to <data dir>/peer.log. `running_pool` starts a
relay and several nodes (some listening, some reachable only through the relay) for a test
module or a benchmark to share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path

import trio

from node.benchmark import BENCHMARK_FILE
from node.engines import Engine, GenerationRequest, Piece
from node.processes import node_process
from p2p import DolphinHost
from p2p.processes import DaemonProcess, relay_process, stop_all
from pool import PoolView, find_member
from protocols.eth import TypedDomain
from protocols.ids import pool_topic

__all__ = ["find_member", "running_pool", "watch_pool"]

# Pool views check operator bindings against the Bonding contract's domain; nodes in these tests are
# unregistered (no binding) unless a test registers them on its own chain.
UNCHECKED_DOMAIN = TypedDomain("Dolphin Network", "1", 31337, b"\0" * 20)


class LongAnswers:
    """`engine` with `ignore_eos` set on every request; everything else is the engine's own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        return self._engine.generate(dataclasses.replace(request, ignore_eos=True))


@contextlib.contextmanager
def running_pool(
    base_dir: Path,
    model_dir: Path,
    *,
    direct: int = 1,
    hidden: int = 1,
    node_args: Sequence[str] = (),
    timeout: float = 180.0,
) -> Iterator[tuple[DaemonProcess, list[DaemonProcess]]]:
    """A relay and `direct` + `hidden` node processes serving `model_dir` (the hidden ones without a
    listen address: reachable through the relay only), all ready; stopped on exit. Yields (relay, nodes),
    the direct nodes first.

    The first node benchmarks the engine and the others start from its cached benchmark (same model,
    engine and machine, so the same key), as nodes restarted on one machine would: benchmarks run side by
    side on two cores would attest speeds that differ by chance, and routers would follow the chance.
    """
    relay = relay_process(base_dir / "relay")
    nodes: list[DaemonProcess] = []
    try:
        trio.run(relay.wait_ready)
        for index in range(direct + hidden):
            name = f"node-{index}" if index < direct else f"hidden-{index - direct}"
            data_dir = base_dir / name
            if nodes:
                data_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(nodes[0].data_dir / BENCHMARK_FILE, data_dir / BENCHMARK_FILE)
            args = ("--bootstrap", relay.addr, *node_args)
            nodes.append(node_process(data_dir, model_dir, *args, listen=index < direct))
            if len(nodes) == 1:
                trio.run(nodes[0].wait_ready, timeout)

        async def ready() -> None:
            async with trio.open_nursery() as nursery:
                for node in nodes[1:]:
                    nursery.start_soon(node.wait_ready, timeout)

        trio.run(ready)
        yield relay, nodes
    finally:
        stop_all([*nodes, relay])


async def watch_pool(
    client: DolphinHost, model: bytes, *, binding_domain: TypedDomain = UNCHECKED_DOMAIN
) -> PoolView:
    """Subscribe `client` to `model`'s pool topic (once per client and model); returns the pool view."""
    view = PoolView(model, binding_domain)
    await client.gossip.subscribe(pool_topic(model), view.validate)
    return view
