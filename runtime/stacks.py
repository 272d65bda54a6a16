"""What a process is doing, on demand: SIGUSR1 writes every thread's stack and every trio task's chain of
awaits to stderr (a daemon's log), without stopping it. For a daemon that stalls, or will not stop.

    kill -USR1 PID
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio

__all__ = ["run_with_stack_dumps", "task_tree"]

T = TypeVar("T")


def task_tree(root: trio.lowlevel.Task) -> str:
    """Each task under `root` (indented by nursery depth) with the frames it is awaiting in, innermost
    last."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        indent = "  " * depth
        lines.append(f"{indent}task {task.name}")
        for filename, line, function in _awaiting(task.coro):
            lines.append(f"{indent}  {filename}:{line} in {function}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    walk(root, 0)
    return "\n".join(lines) + "\n"


def _awaiting(coro: Any) -> Iterator[tuple[str, int, str]]:
    """The frames down a coroutine's await chain (coroutines, async generators, generators)."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        frame = frame or getattr(coro, "gi_frame", None)
        if frame is not None:
            yield frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )


async def _dump_on_signal() -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            sys.stderr.write("--- SIGUSR1: threads\n")
            sys.stderr.flush()
            faulthandler.dump_traceback(all_threads=True)
            root = trio.lowlevel.current_root_task()
            sys.stderr.write("--- SIGUSR1: trio tasks\n" + (task_tree(root) if root is not None else ""))
            sys.stderr.flush()


async def run_with_stack_dumps(async_fn: Callable[[], Awaitable[T]]) -> T:
    """`await async_fn()`, answering SIGUSR1 with the dumps (module docstring) while it runs."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_dump_on_signal)
        result = await async_fn()
        nursery.cancel_scope.cancel()
    return result
