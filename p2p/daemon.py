"""Long-running peers: `serve_peer` runs a host until SIGINT/SIGTERM and writes ready.json when ready.

DESIGN.md, "Readiness and automation hooks": scripts and tests wait on `<data-dir>/ready.json` rather than
sleeping. The file is written atomically (temp file + rename) only once the host listens, has
bootstrapped and settled its reachability, and it is removed on a clean exit so a stale file never
says a stopped peer is up.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import trio

from p2p.config import HostConfig
from p2p.errors import P2PError
from p2p.host import DolphinHost, open_host

READY_FILE = "ready.json"
log = logging.getLogger(__name__)

OnReady = Callable[[DolphinHost], Awaitable[dict | None]]


def ready_document(host: DolphinHost, extra: dict | None = None) -> dict:
    """What ready.json says about a host: who it is, where to reach it, how it behaves."""
    document = {
        "peer_id": host.peer_id,
        "listen_addrs": host.listen_addrs(),
        "circuit_addrs": host.circuit_addrs(),
        "advertised_addrs": host.advertised_addrs(),
        "reachable": host.reachable,
        "dht_mode": host.dht.mode,
        "relay_service": host.config.relay_service,
        "pid": os.getpid(),
    }
    document.update(extra or {})
    return document


class DataDirInUse(P2PError):
    """Another running daemon serves from this data dir (its ready.json names a live process)."""


def check_data_dir_free(data_dir: Path) -> None:
    """Refuse (DataDirInUse) a data dir whose ready.json names another live process: two daemons in one
    dir overwrite each other's ready.json, and the first to stop deletes the other's. A ready.json left by
    a process that died is stale and ignored."""
    try:
        pid = json.loads((Path(data_dir) / READY_FILE).read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass  # alive, someone else's
    raise DataDirInUse(
        f"{data_dir} is in use by another running process (pid {pid}, see its {READY_FILE}): "
        "give this one its own --data-dir"
    )


def write_ready_file(data_dir: Path, document: dict) -> Path:
    """Atomically write `document` as data_dir/ready.json."""
    path = Path(data_dir) / READY_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
    return path


async def serve_peer(
    config: HostConfig,
    *,
    on_ready: OnReady | None = None,
    task_status: trio.TaskStatus[DolphinHost] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a host until SIGINT or SIGTERM, then stop cleanly.

    `on_ready(host)` runs after bootstrap and before ready.json is written (announce pool records,
    subscribe to topics); a dict it returns is merged into ready.json. Raises DataDirInUse when another
    live daemon's ready.json is in the data dir.
    """
    check_data_dir_free(config.data_dir)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_host(config) as host:
            extra = await on_ready(host) if on_ready is not None else None
            path = write_ready_file(config.data_dir, ready_document(host, extra))
            task_status.started(host)
            try:
                async for _signal in signals:
                    break
            finally:
                path.unlink(missing_ok=True)


async def drain(signals: AsyncIterator[int], finish: Callable[[], Awaitable[None]], timeout: float) -> bool:
    """A daemon's drain after its first SIGINT/SIGTERM: await `finish()` (the work in flight, and what must
    follow it) for up to `timeout` seconds, or until a second signal says stop now. Returns whether it
    finished."""
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
