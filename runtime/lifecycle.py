"""A daemon's life, the same for every daemon: claim the data dir, serve, announce readiness, drain.

    claim_data_dir(dir)                    before anything slow: refuse a dir another daemon serves from
    async with open_daemon(dir) as daemon: SIGINT/SIGTERM caught from here on, trio-asyncio's loop (SQLite)
        ... stores, host, nursery, the daemon's own units ...
        await daemon.serve(nursery, document, drain, task_status)

`serve` writes ready.json, hands `document` to whoever started the daemon, and waits for the first signal;
then the daemon drains (`Drain`): it refuses new work, finishes what is in flight (and what must follow it,
e.g. a node's last heartbeats and receipts) for up to its timeout or until a second signal, and stops,
removing ready.json and cancelling the nursery. `InFlight` is the one count of work in progress that a
drain waits for.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio
import trio_asyncio

from runtime.files import make_private_dir
from runtime.ready import check_data_dir_free, write_ready_file

__all__ = ["Daemon", "Drain", "InFlight", "claim_data_dir", "drain", "open_daemon"]

log = logging.getLogger(__name__)


def claim_data_dir(data_dir: Path) -> Path:
    """Refuse (DataDirInUse) a data dir another live daemon serves from, else create it, private (0700)."""
    check_data_dir_free(data_dir)
    return make_private_dir(data_dir)


class InFlight:
    """Work in progress (requests, challenges) and an event for when there is none; `on_change` hears
    each new count (a gauge)."""

    def __init__(self, on_change: Callable[[int], object] = lambda count: None) -> None:
        self.count = 0
        self._on_change = on_change
        self._idle = trio.Event()
        self._idle.set()

    def start(self) -> None:
        self.count += 1
        self._on_change(self.count)
        if self.count == 1:
            self._idle = trio.Event()

    def end(self) -> None:
        self.count -= 1
        self._on_change(self.count)
        if self.count == 0:
            self._idle.set()

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Counts the block as one piece of work in flight."""
        self.start()
        try:
            yield
        finally:
            self.end()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass(frozen=True)
class Drain:
    """What a daemon does between its first SIGINT/SIGTERM and stopping (module docstring)."""

    begin: Callable[[], None]
    """Refuse new work, and say so in the daemon's log."""
    finish: Callable[[], Awaitable[None]]
    """The work in flight, and what must follow it."""
    unfinished: Callable[[], None]
    """`finish` timed out or a second signal came: log what is left."""
    timeout: float


async def drain(signals: AsyncIterator[int], finish: Callable[[], Awaitable[None]], timeout: float) -> bool:
    """Await `finish()` for up to `timeout` seconds, or until a second signal says stop now. Returns
    whether it finished."""
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as waiting:

            async def stop_on_second_signal() -> None:
                async for _ in signals:
                    log.warning("second signal: stopping now")
                    waiting.cancel_scope.cancel()

            waiting.start_soon(stop_on_second_signal)
            await finish()
            waiting.cancel_scope.cancel()
            return True
    return False


class Daemon:
    """One running daemon: its data dir and signals, and whether it is draining (its status pages and
    refusals read `draining`)."""

    def __init__(self, data_dir: Path, signals: AsyncIterator[int]) -> None:
        self.data_dir = data_dir
        self.draining = False
        self._signals = signals

    async def serve(
        self,
        nursery: trio.Nursery,
        document: dict,
        stopping: Drain,
        task_status: trio.TaskStatus[dict],
    ) -> None:
        """Write ready.json, report `document` as started, wait for a signal and drain; then remove
        ready.json and cancel `nursery` (the daemon's tasks)."""
        ready = write_ready_file(self.data_dir, document)
        task_status.started(document)
        try:
            async for _ in self._signals:
                break
            self.draining = True
            stopping.begin()
            if not await drain(self._signals, stopping.finish, stopping.timeout):
                stopping.unfinished()
        finally:
            ready.unlink(missing_ok=True)
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_daemon(data_dir: Path) -> AsyncIterator[Daemon]:
    """Catch SIGINT/SIGTERM (for `Daemon.serve`) and run trio-asyncio's loop (SQLite needs it) inside."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio_asyncio.open_loop():
            yield Daemon(data_dir, signals)
