"""Hole punching (libp2p's DCUtR, /libp2p/dcutr): a relayed connection moves to a direct one where it can.

A peer that accepts a connection through a relay circuit is one the other side could not dial (why else
the relay); as the DCUtR spec has it, that inbound side starts the exchange, on the relayed connection:

    inbound side  -> CONNECT (its direct addresses)
    dialler       -> CONNECT (its direct addresses)   the inbound side times this round trip
    inbound side  -> SYNC                              the dialler dials at once; the inbound side
                                                       dials half a round trip later
Whichever dial lands is a direct connection, to the same peer id (Noise proves it), and py-libp2p's
choice of connection for a new stream puts direct before relayed: the streams that follow go direct, and
the circuit carries what it already carries until it ends.

What it reaches: a peer behind NAT and one with a public address, the common case here (a node on a
home line asked by a gateway or a validator on a server): the peer behind NAT dials out ("connection
reversal"). Our TCP dials do not leave from the listening port, which a simultaneous open through two
NATs needs, so two peers that are both behind NAT stay relayed.

The addresses dialled are ones a peer supplies, and a peer can name anybody's. So only /ip4 or /ip6 with
/tcp are dialled (no DNS names, no circuits), only global ones (a peer must not steer us into our own
network: no loopback, private or link-local address) unless `allow_private` (tests, one LAN), at most
MAX_DIALLED_ADDRS of them; a peer is punched once per PUNCH_COOLDOWN_SECONDS and the host starts at most
PUNCHES_PER_MINUTE in all. What a misused punch costs a third party: one TCP handshake and Noise's first
message per address, to a port that refuses or drops them.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import math
import time
from typing import TYPE_CHECKING

import multiaddr
import trio
from libp2p.abc import INotifee
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.rcmgr import Direction
from libp2p.relay.circuit_v2.pb.dcutr_pb2 import HolePunch

from p2p.errors import P2PError
from p2p.streams import Stream

if TYPE_CHECKING:
    from p2p.host import DolphinHost

logger = logging.getLogger(__name__)

DCUTR_PROTOCOL = "/libp2p/dcutr"
MAX_MESSAGE_BYTES = 4096  # the spec's limit on one message
MAX_SENT_ADDRS = 8
MAX_DIALLED_ADDRS = 4
PUNCH_COOLDOWN_SECONDS = 60.0
PUNCHES_PER_MINUTE = 30
# The exchange takes 1.5 round trips over the circuit, a direct dial one more; deadlines are these many
# seconds, or more where the measured round trip says so (DolphinHost.deadline).
EXCHANGE_SECONDS = 10.0
EXCHANGE_ROUND_TRIPS = 4
QUEUED_PUNCHES = 64


@dataclasses.dataclass
class PunchCounts:
    """What the hole puncher did, for ready.json and the benchmark."""

    started: int = 0  # exchanges this peer began (it was the inbound side of a circuit)
    answered: int = 0  # exchanges another peer began with us
    direct: int = 0  # of those started, ended with a direct connection
    failed: int = 0  # of those started, no address given dialled (or none was fit to dial)
    skipped: int = 0  # not started: cooldown, rate limit or a full queue


def dialable_addrs(raw_addrs: list[bytes], *, allow_private: bool) -> list[multiaddr.Multiaddr]:
    """The addresses among a peer's `raw_addrs` that we will dial (module docstring), at most
    MAX_DIALLED_ADDRS, in the peer's order; anything unparsable or unfit is dropped."""
    kept: list[multiaddr.Multiaddr] = []
    for raw in raw_addrs:
        try:
            addr = multiaddr.Multiaddr(raw)
            names = [protocol.name for protocol in addr.protocols()]
            if names not in (["ip4", "tcp"], ["ip6", "tcp"]):
                continue
            ip = ipaddress.ip_address(addr.value_for_protocol(names[0]))
            port = int(addr.value_for_protocol("tcp"))
        except Exception:  # py-multiaddr raises several error types on bytes a peer made up
            continue
        if ip.is_unspecified or ip.is_multicast or not 0 < port < 65536:
            continue
        if not ip.is_global and not allow_private:
            continue
        if addr not in kept:
            kept.append(addr)
        if len(kept) == MAX_DIALLED_ADDRS:
            break
    return kept


def _without_peer_id(addr: str) -> bytes:
    return multiaddr.Multiaddr(addr.split("/p2p/")[0]).to_bytes()


async def _read(stream: Stream, timeout: float) -> HolePunch:
    message = HolePunch()
    try:
        message.ParseFromString(await stream.read_message(MAX_MESSAGE_BYTES, timeout=timeout))
    except P2PError:
        raise
    except Exception as error:  # protobuf's DecodeError and kin
        raise HolePunchError(f"malformed DCUtR message from {stream.peer_id}: {error}") from error
    if not message.HasField("type"):
        raise HolePunchError(f"DCUtR message from {stream.peer_id} has no type")
    return message


class HolePunchError(P2PError):
    """A DCUtR exchange that broke its protocol."""


class HolePuncher:
    """Both sides of DCUtR for one host: `serve` answers a peer's exchange, `punch` starts one, `run`
    starts one for every relayed connection accepted (fed by `notifee`)."""

    def __init__(self, host: DolphinHost, *, allow_private: bool) -> None:
        self._host = host
        self._allow_private = allow_private
        self.counts = PunchCounts()
        self._last_punch: dict[str, float] = {}
        self._recent: collections.deque[float] = collections.deque()
        self._queue_in, self._queue_out = trio.open_memory_channel[str](QUEUED_PUNCHES)
        self.notifee = _RelayedInbound(self._queue)

    def _queue(self, peer_id: str) -> None:
        try:
            self._queue_in.send_nowait(peer_id)
        except trio.WouldBlock:
            self.counts.skipped += 1

    async def run(self) -> None:
        """Punch each peer whose relayed connection we accepted, each in its own task."""
        async with trio.open_nursery() as nursery:
            async for peer_id in self._queue_out:
                if self._may_punch(peer_id):
                    nursery.start_soon(self._punch_quietly, peer_id)
                else:
                    self.counts.skipped += 1

    def _may_punch(self, peer_id: str) -> bool:
        now = time.monotonic()
        while self._recent and now - self._recent[0] > 60:
            self._recent.popleft()
        cooling = now - self._last_punch.get(peer_id, -math.inf) < PUNCH_COOLDOWN_SECONDS
        if cooling or len(self._recent) >= PUNCHES_PER_MINUTE:
            return False
        self._last_punch = {p: t for p, t in self._last_punch.items() if now - t < PUNCH_COOLDOWN_SECONDS}
        self._last_punch[peer_id] = now
        self._recent.append(now)
        return True

    async def _punch_quietly(self, peer_id: str) -> None:
        try:
            await self.punch(peer_id)
        except P2PError as error:
            self.counts.failed += 1
            logger.debug("hole punch to %s failed: %s; it stays relayed", peer_id, error)

    def _own_addrs(self) -> list[bytes]:
        return [_without_peer_id(addr) for addr in self._host.direct_addrs()[:MAX_SENT_ADDRS]]

    def _deadline(self, peer_id: str) -> float:
        return self._host.deadline(EXCHANGE_SECONDS, EXCHANGE_ROUND_TRIPS, peer_id)

    async def punch(self, peer_id: str) -> bool:
        """Start the exchange with `peer_id` over our relayed connection to it; True once a direct
        connection stands. HolePunchError (or another P2PError) when the exchange itself fails."""
        if not self._host.relayed_only(peer_id):
            return False  # gone (a stream opened now would dial the addresses it gave), or direct already
        self.counts.started += 1
        timeout = self._deadline(peer_id)
        stream = await self._host.open_stream(peer_id, DCUTR_PROTOCOL, optimistic=True)
        try:
            started = time.monotonic()
            connect = HolePunch(type=HolePunch.CONNECT, ObsAddrs=self._own_addrs())
            await stream.write_message(connect.SerializeToString(), timeout=timeout)
            answer = await _read(stream, timeout)
            round_trip = time.monotonic() - started
            if answer.type != HolePunch.CONNECT:
                raise HolePunchError(f"{peer_id} answered CONNECT with message type {answer.type}")
            await stream.write_message(HolePunch(type=HolePunch.SYNC).SerializeToString(), timeout=timeout)
        finally:
            await stream.close()
        addrs = dialable_addrs(list(answer.ObsAddrs), allow_private=self._allow_private)
        if not addrs:
            self.counts.failed += 1
            logger.debug("hole punch to %s: it gave no address fit to dial", peer_id)
            return False
        await trio.sleep(round_trip / 2)
        if await self._host.dial_direct(peer_id, addrs, timeout=timeout):
            self.counts.direct += 1
            logger.info("connection to %s moved off its relay: direct now", peer_id)
            return True
        self.counts.failed += 1
        logger.debug(
            "hole punch to %s: none of its %d address(es) dialled; it stays relayed", peer_id, len(addrs)
        )
        return False

    async def serve(self, stream: Stream) -> None:
        """Answer an exchange a peer began: our addresses back, then, at its SYNC, dial its addresses."""
        if not stream.relayed:
            await stream.reset()  # the exchange is for relayed connections only
            return
        self.counts.answered += 1
        timeout = self._deadline(stream.peer_id)
        connect = await _read(stream, timeout)
        if connect.type != HolePunch.CONNECT:
            raise HolePunchError(f"{stream.peer_id} began DCUtR with message type {connect.type}")
        reply = HolePunch(type=HolePunch.CONNECT, ObsAddrs=self._own_addrs())
        await stream.write_message(reply.SerializeToString(), timeout=timeout)
        sync = await _read(stream, timeout)
        if sync.type != HolePunch.SYNC:
            raise HolePunchError(f"{stream.peer_id} sent message type {sync.type} where SYNC was due")
        await stream.close()
        addrs = dialable_addrs(list(connect.ObsAddrs), allow_private=self._allow_private)
        if addrs and self._may_punch(stream.peer_id):
            await self._host.dial_direct(stream.peer_id, addrs, timeout=timeout)


class _RelayedInbound(INotifee):
    """Hands the hole puncher the peer of every relayed connection this host accepted (a notifee runs in
    the swarm's own task: it only queues)."""

    def __init__(self, queue) -> None:
        self._queue = queue

    async def connected(self, network, conn) -> None:
        if (
            isinstance(conn, SwarmConn)
            and conn.direction == Direction.INBOUND
            and conn.get_connection_type() == ConnectionType.RELAYED
        ):
            self._queue(conn.muxed_conn.peer_id.to_base58())

    async def disconnected(self, network, conn) -> None:
        return None

    async def opened_stream(self, network, stream) -> None:
        return None

    async def closed_stream(self, network, stream) -> None:
        return None

    async def listen(self, network, multiaddr) -> None:
        return None

    async def listen_close(self, network, multiaddr) -> None:
        return None
