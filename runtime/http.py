"""Serving a Starlette app on hypercorn's trio worker: the local API's and the gateway's one way to listen."""

from __future__ import annotations

import logging
import socket

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette

__all__ = ["free_local_port", "serve_http"]


async def serve_http(
    app: Starlette,
    address: str,
    *,
    log_name: str,
    graceful_timeout: float = 1.0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `address` (host:port, port 0 for any free one) until cancelled; started with the
    base URL, e.g. http://127.0.0.1:8477. Hypercorn's own messages go to the logger `log_name`; request
    lines are not logged (nothing of a prompt may reach a log)."""
    config = Config()
    config.bind = [address]
    config.accesslog = None
    config.errorlog = logging.getLogger(log_name)
    config.graceful_timeout = graceful_timeout
    # hypercorn calls only `started`, the part of trio's TaskStatus _FirstUrl has.
    await serve(app, config, task_status=_FirstUrl(task_status))  # type: ignore[arg-type]


class _FirstUrl:
    """Hands hypercorn's started(binds) on as started(first URL)."""

    def __init__(self, task_status: trio.TaskStatus[str]) -> None:
        self._task_status = task_status

    def started(self, binds: list[str] | None = None) -> None:
        self._task_status.started(binds[0] if binds else "")


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (another process may take it before it is used:
    for servers started at once, and for tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
