"""Long-running peers: `serve_peer` runs a host until SIGINT/SIGTERM and writes ready.json when ready.

Scripts and tests wait on `<data-dir>/ready.json` (`runtime.ready`) rather than sleeping; a peer writes
it only once the host listens, has bootstrapped and settled its reachability. `ready_document` is what
every daemon's ready.json says about its host.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable

import trio

from p2p.config import HostConfig
from p2p.host import DolphinHost, open_host
from runtime.ready import check_data_dir_free, write_ready_file

OnReady = Callable[[DolphinHost], Awaitable[dict | None]]

log = logging.getLogger(__name__)


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
                async for received in signals:
                    log.info("stopping on %s", signal.Signals(received).name)
                    break
            finally:
                path.unlink(missing_ok=True)
    log.info("stopped")
