"""Telling the network this node serves a model: a signed DHT pool record and periodic heartbeats.

The DHT record (p2p.records) lets a client find the node's addresses by model id; the heartbeat on the
model's pool topic carries what a client needs to send it an encrypted request (its X25519 key), how busy
it is, and the operator wallet's binding of this peer id, which the pool view checks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import trio

from p2p import DolphinHost, P2PError
from protocols import envelope
from protocols.ids import pool_topic
from protocols.keys import Identity, peer_id_from_public_key
from protocols.messages import HardwareSummary, OperatorBinding, PoolHeartbeat

log = logging.getLogger(__name__)


def detect_hardware() -> HardwareSummary:
    """What this machine offers, as far as torch and the OS can tell without a benchmark."""
    import torch

    ram_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return HardwareSummary(
            backend="cuda",
            gpu_name=props.name[:64],
            gpu_count=torch.cuda.device_count(),
            vram_mib=props.total_memory // (1 << 20),
            cpu_cores=os.cpu_count() or 1,
            ram_mib=ram_mib,
        )
    return HardwareSummary(
        backend="cpu", gpu_name="", gpu_count=0, vram_mib=0, cpu_cores=os.cpu_count() or 1, ram_mib=ram_mib
    )


def software_version() -> str:
    return f"dolphin/{metadata.version('dolphin-network')}"


@dataclass(frozen=True)
class Announcement:
    """The parts of a heartbeat that do not change while the node runs."""

    binding: OperatorBinding
    encryption_key: bytes
    model: bytes
    capacity: int
    hardware: HardwareSummary
    software_version: str
    started_at_ms: int


def heartbeat_envelope(
    identity: Identity, announcement: Announcement, *, load: int, queued: int, seq: int, ttl_ms: int
) -> bytes:
    now_ms = time.time_ns() // 1_000_000
    heartbeat = PoolHeartbeat(
        peer_id=peer_id_from_public_key(identity.public_key),
        binding=announcement.binding,
        model=announcement.model,
        encryption_key=announcement.encryption_key,
        capacity=announcement.capacity,
        load=load,
        queued=queued,
        hardware=announcement.hardware,
        software_version=announcement.software_version,
        started_at_ms=announcement.started_at_ms,
        sent_at_ms=now_ms,
        seq=seq,
    )
    return envelope.sign(heartbeat, identity, now_ms=now_ms, ttl_ms=ttl_ms)


async def serve_announcements(
    host: DolphinHost,
    identity: Identity,
    announcement: Announcement,
    load: Callable[[], tuple[int, int]],
    *,
    interval: float = 5.0,
    record_ttl: int = 300,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep the DHT record fresh and publish a heartbeat every `interval` seconds; never returns.

    `load()` returns (requests in progress, requests queued). Started once the first record and heartbeat
    are out. Failures to reach the DHT or the mesh are logged and retried next round, never fatal.
    """
    topic = pool_topic(announcement.model)
    seq = 0
    next_record = 0.0
    while True:
        if trio.current_time() >= next_record:
            try:
                await host.dht.put_record(announcement.model, host.advertised_addrs(), record_ttl)
                next_record = trio.current_time() + record_ttl / 2
            except P2PError as exc:
                log.warning("could not store the pool record in the DHT (retrying): %s", exc)
        seq += 1
        in_progress, queued = load()
        data = heartbeat_envelope(
            identity,
            announcement,
            load=in_progress,
            queued=queued,
            seq=seq,
            ttl_ms=max(PoolHeartbeat.MIN_TTL_MS, int(interval * 4000)),
        )
        try:
            await host.gossip.publish(topic, data)
        except P2PError as exc:
            log.warning("could not publish a heartbeat (retrying): %s", exc)
        if seq == 1:
            task_status.started()
        await trio.sleep(interval)
