"""Telling the network this node serves a model: a signed DHT pool record and periodic heartbeats.

The DHT record (p2p.records) lets a client find the node's addresses by model id; the heartbeat on the
model's pool topic carries what a client needs to send it an encrypted request (its X25519 key), how busy
it is, and the operator wallet's binding of this peer id, which the pool view checks.

So that a client knowing only the model's manifest name can find it, the record is stored under the
name's key too (`protocols.ids.model_name_key`) and each heartbeat, which names the model id, is also
published on the name's topic (`model_name_topic`). So that one knowing no model at all can list what the
network serves, the record is stored under MODELS_RECORD and heartbeats go to MODELS_TOPIC as well.

A peer that has just dialled the node asks it for its latest heartbeat (HEARTBEAT_PROTOCOL,
`HeartbeatServer`) rather than wait up to a heartbeat interval, plus gossip's own round trips, for the
next one: a cold client's first request needs the encryption key it carries.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

import trio

from p2p import DolphinHost, P2PError
from p2p.interfaces import MessageStream
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.ids import MODELS_RECORD, MODELS_TOPIC, model_name_key, model_name_topic, pool_topic
from protocols.keys import Identity, peer_id_from_public_key
from protocols.messages import HardwareSummary, HeartbeatRequest, OperatorBinding, PoolHeartbeat
from protocols.schema import decode_message

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
    """What a heartbeat says besides the load. `binding` is None for a node no operator registered;
    `capacity` drops to 0 while the node drains or yields to its owner."""

    binding: OperatorBinding | None
    encryption_key: bytes
    model: bytes
    capacity: int
    hardware: HardwareSummary
    software_version: str
    started_at_ms: int
    model_name: str = ""  # the manifest's name


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
        model_name=announcement.model_name,
    )
    return envelope.sign(heartbeat, identity, now_ms=now_ms, ttl_ms=ttl_ms)


class Announcer:
    """Keeps this node's DHT pool record fresh and heartbeats its pool topic every `interval` seconds.

    `announcement()` and `load()` (answers in progress, requests queued) are read at each heartbeat;
    `publish_soon()` sends the next one at once (capacity or encryption key changed). Failures to reach
    the DHT or the mesh are logged and retried next round, never fatal.
    """

    def __init__(
        self,
        host: DolphinHost,
        identity: Identity,
        announcement: Callable[[], Announcement],
        load: Callable[[], tuple[int, int]],
        *,
        interval: float = 5.0,
        record_ttl: int = 300,
    ) -> None:
        self.host = host
        self.identity = identity
        self.announcement = announcement
        self.load = load
        self.interval = interval
        self.record_ttl = record_ttl
        self.seq = 0
        self.latest: tuple[bytes, bytes] | None = None  # (model id, the envelope) last published
        self._wake = trio.Event()

    def publish_soon(self) -> None:
        self._wake.set()

    async def publish(self) -> None:
        """One heartbeat now."""
        announcement = self.announcement()
        self.seq += 1
        in_progress, queued = self.load()
        data = heartbeat_envelope(
            self.identity,
            announcement,
            load=in_progress,
            queued=queued,
            seq=self.seq,
            ttl_ms=max(PoolHeartbeat.MIN_TTL_MS, int(self.interval * 4000)),
        )
        self.latest = (announcement.model, data)
        topics = [pool_topic(announcement.model), MODELS_TOPIC]
        if announcement.model_name:
            topics.append(model_name_topic(announcement.model_name))
        for topic in topics:
            try:
                await self.host.gossip.publish(topic, data)
            except P2PError as exc:
                log.warning("could not publish a heartbeat (retrying): %s", exc)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Never returns; started once the first record and heartbeat are out."""
        first = self.announcement()
        keys = [first.model, MODELS_RECORD] + ([model_name_key(first.model_name)] if first.model_name else [])
        next_record = 0.0
        while True:
            if trio.current_time() >= next_record and not self.host.advertised_addrs():
                # Alone (no bootstrap peer answered) or unreachable with no relay yet: a record with no
                # address is invalid, and the host logs why it is alone. Stored as soon as one appears.
                log.debug("no address others can dial yet: the pool record waits")
            elif trio.current_time() >= next_record:
                try:
                    for key in keys:
                        await self.host.dht.put_record(key, self.host.advertised_addrs(), self.record_ttl)
                    next_record = trio.current_time() + self.record_ttl / 2
                except P2PError as exc:
                    log.warning("could not store the pool record in the DHT (retrying): %s", exc)
            self._wake = trio.Event()
            await self.publish()
            if self.seq == 1:
                task_status.started()
            with trio.move_on_after(self.interval):
                await self._wake.wait()


_MAX_HEARTBEAT_REQUEST_BYTES = 128


class HeartbeatServer:
    """The HEARTBEAT_PROTOCOL handler: the latest heartbeat `announcers` published for the model asked
    about, the very envelope gossip carried (signed, with its own expiry), so answering costs no signature
    and says nothing the topic does not; a model not served here, or nothing published yet, resets."""

    def __init__(self, announcers: Sequence[Announcer]) -> None:
        self._announcers = announcers

    async def handle(self, stream: MessageStream) -> None:
        try:
            request = decode_message(
                await stream.read_message(_MAX_HEARTBEAT_REQUEST_BYTES), HeartbeatRequest
            )
        except (P2PError, ProtocolError) as exc:
            log.info("malformed heartbeat request from %s: %s", stream.peer_id, exc)
            await stream.reset()
            return
        latest = [
            a.latest[1] for a in self._announcers if a.latest is not None and a.latest[0] == request.model
        ]
        if not latest:
            await stream.reset()
            return
        try:
            await stream.write_message(latest[0])
            await stream.close()
        except P2PError as exc:
            log.debug("heartbeat to %s not delivered: %s", stream.peer_id, exc)
            await stream.reset()
