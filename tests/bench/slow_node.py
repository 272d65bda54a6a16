"""A test-only `dolphin node` whose engine is slower by a fixed delay per token: nodes of different speeds
for the routing benchmark, on one machine and one tiny model.

    python -m tests.bench.slow_node --token-delay-ms 20 [dolphin node options]

It is the real daemon (`serve_node` through `dolphin node`); only the engine it opens is wrapped. Like a
slower GPU, the node still answers up to its batch size (`--max-batch`) at once, each answer holding its
slot until its last (delayed) token, and more wait for a slot; its heartbeats report that load. The
self-benchmark runs through the wrapper too, so the node attests its real, slower speed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import trio

from node import slots
from node.engines.base import EngineLoad, GenerationRequest, Piece


class SlowEngine:
    """Any engine, `delay_s` slower per generated token, `capacity` answers at once; the rest passed on."""

    def __init__(self, inner, delay_s: float, capacity: int) -> None:  # type: ignore[no-untyped-def]
        self._inner = inner
        self._delay_s = delay_s
        self._slots = trio.Semaphore(capacity)
        self._capacity = capacity
        self._waiting = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)

    def load(self) -> EngineLoad:
        return EngineLoad(
            running=self._capacity - self._slots.value, waiting=self._waiting, capacity=self._capacity
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            async with contextlib.aclosing(self._inner.generate(request)) as pieces:
                async for piece in pieces:
                    if piece.token_ids:
                        await trio.sleep(self._delay_s * len(piece.token_ids))
                    yield piece
        finally:
            self._slots.release()


def main(argv: list[str]) -> None:
    delay_ms = float(argv[argv.index("--token-delay-ms") + 1])
    rest = [
        a
        for i, a in enumerate(argv)
        if a != "--token-delay-ms" and (i == 0 or argv[i - 1] != "--token-delay-ms")
    ]
    open_engine = slots._open_engine

    @contextlib.asynccontextmanager
    async def open_slow_engine(config, *where_and_progress):  # type: ignore[no-untyped-def]
        async with open_engine(config, *where_and_progress) as engine:
            yield SlowEngine(engine, delay_ms / 1000, config.max_batch)

    slots._open_engine = open_slow_engine
    from cli.main import main as dolphin

    dolphin(["-v", "node", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
