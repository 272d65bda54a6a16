"""The Dolphin libp2p host: `open_host(config)` gives a running, hardened host.

Transports and upgrades are fixed: TCP, Noise only (no plaintext, no secio, no TLS fallback), Yamux
only; identify and ping come from py-libp2p. Around them:
- every inbound stream runs inside `_ShieldedHost._swarm_stream_handler`, which catches anything a
  handler raises (py-libp2p's own handlers included: one malformed 6-byte /meshsub frame raises a
  protobuf DecodeError that would otherwise end the process) and caps concurrent streams per protocol;
- every outbound await (dial, stream open, read, write) has a deadline;
- one connection per peer (DESIGN.md: more costs ~250 ms per dial and gains nothing);
- the relay (circuit v2) client is always on; the relay service only where configured.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import cast

import multiaddr
import trio
from libp2p import new_swarm
from libp2p.connection_types import ConnectionType
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.kad_dht.kad_dht import DHTMode
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import STOP_PROTOCOL_ID as STOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport, TrackedRawConnection
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.transport.exceptions import MuxerUpgradeFailure, SecurityUpgradeFailure

from p2p import reachability
from p2p.config import DhtMode, HostConfig, Reachability
from p2p.dht import Dht, build_kad
from p2p.errors import BootstrapUnreachable, DialError, P2PError, ProtocolNotSupported
from p2p.gossip import GOSSIP_PROTOCOLS, Gossip, build_pubsub, build_router
from p2p.holepunch import DCUTR_PROTOCOL, HolePuncher, PunchCounts
from p2p.identity import ephemeral_identity, load_or_create_identity, signing_seed
from p2p.multistream import install_pipelined_selection, replace_first_read
from p2p.noise import install_whole_noise_frames
from p2p.ports import check_listen_addrs, install_exclusive_tcp_listeners
from p2p.streams import (
    MULTISTREAM_PROTOCOL,
    RawStream,
    Stream,
    install_bounded_stream_resets,
    multistream_line,
)
from p2p.topics import KAD_PROTOCOL, REACHABILITY_PROTOCOL

logger = logging.getLogger(__name__)

StreamHandler = Callable[[Stream], Awaitable[None]]
RESERVATION_REFRESH_SECONDS = 300.0
DHT_REFRESH_SECONDS = 60.0
# A serving peer that reached none of its bootstrap peers dials them again this often, so a node started
# before its relay (or while the link was down) joins the network by itself once they answer.
BOOTSTRAP_RETRY_SECONDS = 10.0
# Time for py-libp2p to notice a closing connection before a stream dropped on it is opened again.
STREAM_RETRY_PAUSE_SECONDS = 0.2
CIRCUIT_DIAL_RETRIES = 2  # after a dead relay connection or a failed upgrade over a fresh circuit
# Round trips each step costs, to turn a measured round trip into a deadline (timeouts grow with distance:
# a fixed 10 s cut off every relayed peer beyond ~350 ms one way per hop). A direct dial: TCP, then
# Noise's round trip (the security and muxer selections ride along, p2p/multistream.py); measured 1.0
# through a delay proxy, whose TCP handshake is local, 2 over a network. Counting fewer overestimates the
# round trip, the safe side for a deadline.
DIAL_ROUND_TRIPS = 1
# A circuit dial, counted in round trips to the relay: the relay's STOP exchange with the node (1 relay-node
# round trip, about as long), then a direct dial's over the circuit, whose round trip is both hops' (2
# each); CONNECT and Noise's first message leave together (`_PipelinedCircuitTransport`). Measured 3.1
# through a delay proxy (5.2 while the dialler waited for the relay's STATUS). Two more are counted: the
# margin of that wait, for a deadline rather than a sample.
CIRCUIT_DIAL_ROUND_TRIPS = 1 + 2 * DIAL_ROUND_TRIPS + 2
# py-libp2p's streams on a cold ask's path that send a request and read its answer: their protocol's
# selection rides along with the request (p2p/multistream.py), a round trip saved on each.
LAZY_STREAM_PROTOCOLS = (KAD_PROTOCOL, str(HOP_PROTOCOL), str(STOP_PROTOCOL))
STREAM_OPEN_ROUND_TRIPS = 2  # multistream-select (one round trip) and a margin: a deadline, not a sample
RESERVATION_ROUND_TRIPS = 8  # identify, then a HOP stream and RESERVE
# Deadlines are this many times the expected time: a measured round trip is one sample, and a slow CPU
# or a queue can double a handshake's time.
DEADLINE_SLACK = 3.0
# py-libp2p's own deadlines on what we start sit above ours, which are the ones that scale with distance;
# what others start gets a fixed bound, long enough for a far peer's handshake, short enough that a
# peer opening streams it never negotiates cannot hold them long.
LIBP2P_CEILING_SECONDS = 300.0
INBOUND_HANDSHAKE_SECONDS = 60
HANG_UP_SECONDS = 2.0  # closing our connections when the host stops; a dead peer is not waited on


class _StreamDropped(DialError):
    """A stream the connection dropped before its protocol was agreed: worth opening once more."""


class _ShieldedHost(BasicHost):
    """BasicHost whose inbound stream dispatch can never raise, with a per-protocol stream cap."""

    def __init__(self, *args, max_inbound_per_protocol: int, inbound_caps: dict[str, int], **kwargs) -> None:
        """`inbound_caps` overrides the cap for protocols whose streams live long (a circuit's)."""
        self.circuit_addrs: Callable[[], list[multiaddr.Multiaddr]] = list  # set by open_host
        super().__init__(*args, **kwargs)
        self._max_inbound = max_inbound_per_protocol
        self._inbound_caps = inbound_caps
        self._inbound_counts: collections.Counter[str] = collections.Counter()
        self.handler_failures = 0

    def get_addrs(self) -> list[multiaddr.Multiaddr]:
        """What identify, kad answers and provider records advertise: direct addresses, then circuits.

        py-libp2p 0.8.1 cuts every advertised address at its first /p2p/ before appending ours, which
        turns `<relay>/p2p/<relay id>/p2p-circuit` into the relay's own address under our peer id: peers
        that dial it fail a Noise handshake with the relay (four times, with backoff) and then refuse us
        for a while. So the addrs factory returns direct addresses only and circuits are appended whole.
        """
        return super().get_addrs() + list(self.circuit_addrs())

    def set_stream_handler(self, protocol_id, stream_handler) -> None:
        super().set_stream_handler(protocol_id, self._capped(str(protocol_id), stream_handler))

    def _capped(self, protocol: str, handler):
        async def run(net_stream) -> None:
            if self._inbound_counts[protocol] >= self._inbound_caps.get(protocol, self._max_inbound):
                logger.debug("inbound stream cap reached on %s; resetting", protocol)
                await net_stream.reset()
                return
            self._inbound_counts[protocol] += 1
            try:
                await handler(net_stream)
            finally:
                self._inbound_counts[protocol] -= 1

        return run

    async def _swarm_stream_handler(self, net_stream) -> None:
        try:
            await super()._swarm_stream_handler(net_stream)
        except Exception as error:  # the shield: nothing a remote peer sends may end the host
            self.handler_failures += 1
            peer = getattr(getattr(net_stream, "muxed_conn", None), "peer_id", "?")
            logger.info("inbound stream from %s failed and was reset: %r", peer, error)
            with trio.move_on_after(1), contextlib.suppress(Exception):
                await net_stream.reset()


class _CircuitRelay(CircuitV2Protocol):
    """The circuit relay with each circuit's cleanup kept to its own two streams.

    py-libp2p 0.8.1 files every circuit under its destination's peer id and, when one ends, closes the
    streams filed there: those of the newest circuit to that peer. So one client leaving a node behind a
    relay broke every other client's answer from that node in flight (CI: twelve asks at once).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._active_relays = _Unfiled()

    async def _relay_data(self, src_stream, dst_stream, peer_id, *args, **kwargs) -> None:
        try:
            await super()._relay_data(src_stream, dst_stream, peer_id, *args, **kwargs)
        finally:  # one direction ended: the circuit is over, both ways
            with trio.CancelScope(shield=True):
                await self._close_stream(src_stream)
                await self._close_stream(dst_stream)


class CircuitRefused(ConnectionError):
    """The relay answered a circuit's CONNECT with a status other than OK (no reservation, limits...)."""


class _PipelinedCircuitTransport(CircuitV2Transport):
    """The relay client, dialling exactly the circuit asked for, with its CONNECT pipelined.

    py-libp2p's client sends CONNECT and waits for the relay's STATUS before the first handshake byte goes
    out: a round trip to the relay, on top of the relay's own to the node. Here the dialler goes straight
    on (Noise's first message follows CONNECT on the stream) and the relay's STATUS is read on the
    circuit's first read, before anything else; a refusal fails that read with CircuitRefused, and with
    it the upgrade. Relays read CONNECT to its length prefix and pass what follows once the circuit is
    open (py-libp2p's does; the spec's others keep what they read past it). py-libp2p's client also tries
    every circuit address its peerstore holds for the peer, in its own order, before the one asked for;
    a dial here goes through the address it is given, as a direct dial does.
    """

    async def dial(self, maddr: multiaddr.Multiaddr):
        try:
            relay_maddr, destination = self.parse_circuit_ma(maddr)
        except ValueError as error:
            raise ConnectionError(str(error)) from error
        relay_text = relay_maddr.get_peer_id()
        if not relay_text:
            raise ConnectionError(f"{maddr} names no relay peer id")
        relay = ID.from_base58(str(relay_text))
        stream = await self.host.new_stream(relay, [HOP_PROTOCOL])
        try:
            connect = HopMessage(type=HopMessage.CONNECT, peer=CircuitPeerId(id=destination.to_bytes()))
            await write_delimited_msg(stream, connect)
        except BaseException:
            await stream.reset()
            raise
        _read_status_first(stream, relay)
        raw = RawConnection(
            stream=stream, initiator=True, connection_type=ConnectionType.RELAYED, addresses=[maddr]
        )
        tracked = TrackedRawConnection(wrapped=raw, relay_id=relay, tracker=self.performance_tracker)
        try:
            return await self.host.upgrade_outbound_connection(tracked, destination)
        except BaseException:  # a deadline's cancellation too: py-libp2p closes the stream on its own errors
            with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
                await tracked.close()
            raise


def _read_status_first(stream, relay: ID) -> None:
    """Until its first read returns, `stream.read` first reads the relay's answer to CONNECT and raises
    CircuitRefused unless it is OK (the lazy HOP selection's check, installed before, still comes first)."""

    async def first_read(n: int | None) -> bytes:
        answer = await read_delimited_msg(stream, HopMessage)
        status = StatusCode(answer.status) if answer.HasField("status") else StatusCode.OK
        if status != StatusCode.OK:
            raise CircuitRefused(f"relay {relay} refused the circuit: {status.name}")
        return await stream.read(n)

    replace_first_read(stream, first_read)


class _Unfiled(dict):
    """A circuit table that files nothing: what py-libp2p looks up there is never another circuit."""

    def __setitem__(self, key, value) -> None:
        pass


class DolphinHost:
    """A running peer: identity, connections, streams, gossip, DHT, relays. Made by `open_host`."""

    def __init__(self, config: HostConfig, host: _ShieldedHost, gossip: Gossip, dht: Dht, relay) -> None:
        self.config = config
        self._host = host
        self.gossip = gossip
        self.dht = dht
        self._relay_transport: CircuitV2Transport = relay
        self._circuit_addrs: list[multiaddr.Multiaddr] = []
        self._round_trips: dict[str, float] = {}
        self.reachable: bool | None = None
        # Why each bootstrap peer could not be dialled at the last attempt (empty: all answered).
        self.bootstrap_failures: dict[str, str] = {}
        self.hole_punches = PunchCounts()  # the hole puncher's, once open_host made it

    # ---- identity and addresses ----
    @property
    def peer_id(self) -> str:
        return self._host.get_id().to_base58()

    def signing_seed(self) -> bytes:
        """The peer key's Ed25519 seed: envelopes this peer signs (protocols.keys.Identity) use this key."""
        return signing_seed(self._host.get_private_key())

    def listen_addrs(self) -> list[str]:
        """Direct addresses we listen on, each ending in /p2p/<our id>."""
        return [f"{a}/p2p/{self.peer_id}" for a in self._host.get_transport_addrs()]

    def circuit_addrs(self) -> list[str]:
        """Relay addresses we hold reservations on (…/p2p/<relay>/p2p-circuit/p2p/<our id>)."""
        return [str(a) for a in self._circuit_addrs]

    def direct_addrs(self) -> list[str]:
        """The direct addresses others should dial: the announced ones if configured, else the listen ones."""
        if self.config.announce:
            return [f"{a}/p2p/{self.peer_id}" for a in self.config.announce]
        return self.listen_addrs()

    def advertised_addrs(self) -> list[str]:
        """What others should dial: direct addresses when reachable, relay circuits otherwise."""
        direct = self.direct_addrs() if self.reachable is not False else []
        return direct + self.circuit_addrs()

    def connected_peers(self) -> list[str]:
        return sorted(p.to_base58() for p in self._host.get_connected_peers())

    def statistics(self) -> dict:
        """Introspection for logs, ready.json and tests."""
        return {
            "peer_id": self.peer_id,
            "connected_peers": len(self._host.get_connected_peers()),
            "routing_table_size": self.dht.routing_table_size(),
            "dht_inbound_streams": self.dht.inbound_streams(),
            "dht_mode": self.dht.mode,
            "reachable": self.reachable,
            "relay_service": self.config.relay_service,
            "inbound_handler_failures": self._host.handler_failures,
            "inbound_streams": {protocol: n for protocol, n in self._host._inbound_counts.items() if n},
            "hole_punches": dataclasses.asdict(self.hole_punches),
        }

    # ---- round trips and deadlines ----
    def round_trip(self, peer_id: str | None = None) -> float | None:
        """The round trip to `peer_id` as estimated from how long dialling it took, in seconds: a peer not
        measured (or None) is taken to be as far as the farthest one measured; None before any dial. An
        overestimate on a busy CPU, which only makes deadlines longer."""
        if peer_id is not None and peer_id in self._round_trips:
            return self._round_trips[peer_id]
        return max(self._round_trips.values(), default=None)

    def deadline(self, base: float, round_trips: float, peer_id: str | None = None) -> float:
        """`base` seconds, or more where `round_trips` round trips to `peer_id` (None: the farthest peer
        measured) are expected to take longer; DEADLINE_SLACK covers a slow sample."""
        measured = self.round_trip(peer_id)
        return base if measured is None else max(base, DEADLINE_SLACK * round_trips * measured)

    def _circuit_dial_deadline(self, relay_id: str) -> float:
        return self.deadline(self.config.timeouts.dial, CIRCUIT_DIAL_ROUND_TRIPS, relay_id)

    # ---- connections and streams ----
    async def connect(self, addr: str, *, timeout: float | None = None) -> str:
        """Dial a full multiaddr (direct, or a relay circuit) and return the peer id. DialError on failure.

        Without `timeout`, a circuit dial's deadline grows with the measured round trip to its relay."""
        try:
            maddr = multiaddr.Multiaddr(addr)
            info = info_from_p2p_addr(maddr)
        except Exception as error:
            raise DialError(f"{addr!r} is not a dialable /p2p/ multiaddr: {error}") from error
        circuit = _is_circuit(maddr)
        if timeout is not None:
            deadline = timeout
        elif circuit and (relay := _relay_of(maddr)) is not None:
            deadline = self._circuit_dial_deadline(relay)
        else:
            deadline = self.config.timeouts.dial
        started = time.monotonic()
        try:
            with trio.fail_after(deadline):
                if circuit:
                    # py-libp2p's host.connect refuses circuit addresses; the relay transport dials them.
                    if info.peer_id not in self._host.get_connected_peers():
                        await self._dial_circuit(maddr, _relay_of(maddr))
                        self._remember_round_trip(info.peer_id, started, CIRCUIT_DIAL_ROUND_TRIPS / 2)
                elif info.peer_id not in self._host.get_connected_peers():
                    await self._host.connect(info)
                    self._remember_round_trip(info.peer_id, started, DIAL_ROUND_TRIPS)
        except trio.TooSlowError as error:
            raise DialError(f"dialling {addr} took over {deadline:g} s") from error
        except Exception as error:  # py-libp2p raises SwarmException, ConnectionError, OSError…
            raise DialError(f"dialling {addr} failed: {dial_failure_reason(error)}") from error
        return info.peer_id.to_base58()

    async def _dial_circuit(self, circuit: multiaddr.Multiaddr, relay_id: str | None) -> None:
        """Dial through a relay; again (twice at most) on a fresh connection to the relay when the one
        held was dead, or when the circuit opened and agreeing Noise or yamux over it failed: the relay
        tears down the circuits of a peer whose old connection it has only just seen close, the fresh
        one's included (about once in fifteen replaced connections)."""
        for retries_left in range(CIRCUIT_DIAL_RETRIES, -1, -1):
            try:
                await self._relay_transport.dial(circuit)
                return
            except Exception as error:
                if not retries_left or any(isinstance(cause, CircuitRefused) for cause in _causes(error)):
                    raise
                if relay_id is not None and await self._forget_if_dead(ID.from_base58(relay_id)):
                    logger.info("the connection to relay %s was dead (%s); dialling afresh", relay_id, error)
                elif not _upgrade_failed(error):
                    raise

    async def _forget_if_dead(self, peer: ID) -> bool:
        """Close and forget the connections to `peer` that can no longer carry a stream; True when any
        could not.

        py-libp2p marks a connection closed before it has finished closing it and drops it from its table
        only after; and it keeps a connection whose writes fail until its reader notices. Until then every
        new stream to that peer fails at once and nothing dials afresh: seen under load on a light client's
        only connection to its relay, which took every circuit through it down for good. Each connection
        is judged on its own: one whose opening frame of a stream cannot be written is dead; one still
        starting or merely slow is kept, with every stream it carries (closing all of a peer's connections
        on a stream that failed to open had reset other answers in flight on them, under load in CI).
        """
        network = self._swarm()
        dead = [
            connection
            for connection in cast(list[SwarmConn], list(network.get_connections(peer)))
            if connection.is_closed or not await self._carries_a_stream(connection)
        ]
        for connection in dead:
            with trio.move_on_after(self.config.timeouts.stream_open), contextlib.suppress(Exception):
                await connection.close()
            network.remove_conn(connection)  # close forgets it only once the muxer's goodbye returned
        return bool(dead)

    async def _carries_a_stream(self, connection) -> bool:
        """False when opening a bare stream on `connection` fails outright (its opening frame cannot be
        written); one still starting, or merely slow, counts as carrying it."""
        if not connection.event_started.is_set():
            return True
        raw = None
        try:
            with trio.move_on_after(self.config.timeouts.stream_open):
                raw = await connection.new_stream()
        except Exception:
            return False
        if raw is not None:  # the opening frame went out: whatever its reset does proves nothing
            with trio.move_on_after(self.config.timeouts.stream_open), contextlib.suppress(Exception):
                await raw.reset()
        return True

    async def _recover_servers(self, servers: list[ID]) -> bool:
        """After a DHT lookup that found nobody, or an announcement nobody took (Dht.recover): forget the
        dead connections to the servers asked and to the bootstrap peers, and dial the bootstrap peers
        again when one was dead or the routing table is empty (py-libp2p evicts a server whose query
        failed, while the dead connection stays listed); whether either was so."""
        suspects = dict.fromkeys([*servers, *self._bootstrap_peers()])
        dead = [peer for peer in suspects if await self._forget_if_dead(peer)]
        empty = self.dht.routing_table_size() == 0 and bool(self.config.bootstrap)
        if dead or empty:
            logger.info(
                "DHT lookups reached nobody (%d dead connection(s), routing table %s): dialling the "
                "bootstrap peers again",
                len(dead),
                "empty" if empty else "not empty",
            )
            await self._dial_bootstrap()
        return bool(dead) or empty

    def _bootstrap_peers(self) -> list[ID]:
        peers = []
        for addr in self.config.bootstrap:
            with contextlib.suppress(Exception):  # a malformed address is reported when it is dialled
                peers.append(info_from_p2p_addr(multiaddr.Multiaddr(addr)).peer_id)
        return peers

    def _swarm(self) -> Swarm:
        """py-libp2p's network as what it is (its INetworkService interface lacks `remove_conn` and
        `unblock_peer`, which its Swarm has)."""
        return cast(Swarm, self._host.get_network())

    def _remember_round_trip(self, peer: ID, started: float, round_trips: float) -> None:
        self._round_trips[peer.to_base58()] = (time.monotonic() - started) / round_trips

    async def connect_any(self, peer_id: str, addrs: Iterable[str], *, timeout: float | None = None) -> None:
        """Be connected to `peer_id`: already, or through the first of `addrs` (full multiaddrs) that
        dials. DialError when none does."""
        if peer_id in self.connected_peers():
            return
        failures = []
        for addr in addrs:
            try:
                await self.connect(addr, timeout=timeout)
                return
            except DialError as error:
                failures.append(str(error))
        raise DialError(f"no address of {peer_id} dialled: {'; '.join(failures) or 'none given'}")

    async def dial_direct(self, peer_id: str, addrs: list[multiaddr.Multiaddr], *, timeout: float) -> bool:
        """Dial `peer_id` directly at the first of `addrs` that answers, beside whatever connection to it
        stands (a hole punch, p2p.holepunch): whether one did, within `timeout` in all."""
        peer = ID.from_base58(peer_id)
        with trio.move_on_after(timeout):
            for addr in addrs:
                started = time.monotonic()
                try:
                    await self._swarm().dial_addr(addr, peer)
                except Exception as error:  # SwarmException, OSError, a failed handshake...
                    logger.debug(
                        "direct dial of %s at %s failed: %s", peer_id, addr, dial_failure_reason(error)
                    )
                    continue
                self._remember_round_trip(peer, started, DIAL_ROUND_TRIPS)
                return True
        return False

    def relayed_only(self, peer_id: str) -> bool:
        """Whether every connection to `peer_id` runs through a relay (False when there is none)."""
        connections = self._swarm().get_connections(ID.from_base58(peer_id))
        return bool(connections) and all(
            c.get_connection_type() == ConnectionType.RELAYED for c in connections
        )

    async def ensure_connected(self, peer_id: str) -> None:
        """Be connected to `peer_id`: already, or by dialling its known addresses (direct ones first,
        then relay circuits). DialError when none works."""
        peer = ID.from_base58(peer_id)
        if peer not in self._host.get_connected_peers():
            await self._dial_known(peer)

    async def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float | None = None, optimistic: bool = False
    ) -> Stream:
        """A new stream to `peer_id`, dialled first if needed (via a relay if that is its only address).

        `optimistic`: send the protocol selection without waiting for the answer (module docstring of
        p2p.streams), which saves the two round trips of multistream-select; a peer that does not speak
        `protocol` then shows as ProtocolNotSupported on the stream's first read.

        A stream the connection drops before its protocol is agreed is opened once more, on a fresh dial
        when the peer is no longer connected or its connection proves dead (`_forget_if_dead`): py-libp2p
        keeps using a connection it has not yet noticed is closing (the loser of two simultaneous dials, a
        circuit its relay hung up), and a second try is what every caller would do anyway.
        """
        if timeout is None:
            deadline = self.deadline(self.config.timeouts.stream_open, STREAM_OPEN_ROUND_TRIPS, peer_id)
        else:
            deadline = timeout
        peer = ID.from_base58(peer_id)
        open_one = self._new_optimistic_stream if optimistic else self._new_stream
        try:
            return await open_one(peer, protocol, deadline)
        except _StreamDropped as error:
            logger.debug("%s; opening it once more", error)
        if not await self._forget_if_dead(peer):
            await trio.sleep(STREAM_RETRY_PAUSE_SECONDS)
        return await open_one(peer, protocol, deadline)

    async def _new_optimistic_stream(self, peer: ID, protocol: str, deadline: float) -> Stream:
        if peer not in self._host.get_connected_peers():
            await self._dial_known(peer)
        selection = multistream_line(MULTISTREAM_PROTOCOL) + multistream_line(protocol)
        try:
            with trio.fail_after(deadline):
                raw = await self._host.get_network().new_stream(peer)
                raw.set_protocol(TProtocol(protocol))
                await raw.write(selection)
        except trio.TooSlowError as error:
            raise DialError(f"opening {protocol} to {peer.to_base58()} took over {deadline:g} s") from error
        except Exception as error:
            raise _StreamDropped(f"opening {protocol} to {peer.to_base58()} failed: {error!r}") from error
        return Stream(cast(RawStream, raw), self.config.timeouts.stream_io, unconfirmed_protocol=protocol)

    async def _new_stream(self, peer: ID, protocol: str, deadline: float) -> Stream:
        if peer not in self._host.get_connected_peers():
            await self._dial_known(peer)
        try:
            with trio.fail_after(deadline):
                raw = await self._host.new_stream(peer, [TProtocol(protocol)])
        except trio.TooSlowError as error:
            raise DialError(f"opening {protocol} to {peer.to_base58()} took over {deadline} s") from error
        except Exception as error:
            if any(_refused_protocol(cause) for cause in _causes(error)):
                raise ProtocolNotSupported(f"{peer.to_base58()} does not speak {protocol}") from error
            raise _StreamDropped(f"opening {protocol} to {peer.to_base58()} failed: {error!r}") from error
        return Stream(cast(RawStream, raw), self.config.timeouts.stream_io)

    async def _dial_known(self, peer: ID) -> None:
        """Dial a peer from its known addresses: direct ones first, then relay circuits.

        py-libp2p's swarm cannot dial circuits and, after one failed round, refuses the peer for a while
        (its "negative cache"); so circuits are dialled here and the cache is cleared on success.
        """
        try:
            known = self._host.get_peerstore().addrs(peer)
        except Exception as error:  # PeerStoreError: never heard of it
            raise DialError(
                f"no known address for {peer.to_base58()}: look it up in the DHT first"
            ) from error
        direct = [a for a in known if not _is_circuit(a)]
        circuits = [a for a in known if _is_circuit(a)]
        if direct:
            deadline = self.deadline(self.config.timeouts.dial, DIAL_ROUND_TRIPS, peer.to_base58())
            started = time.monotonic()
            try:
                with trio.fail_after(deadline):
                    await self._host.connect(PeerInfo(peer, direct))
                self._remember_round_trip(peer, started, DIAL_ROUND_TRIPS)
                return
            except Exception as error:  # any failure: fall through to the circuits
                if not circuits:
                    raise DialError(f"dialling {peer.to_base58()} failed: {error!r}") from error
        failures = []
        for circuit in circuits:
            try:
                await self.connect(str(circuit))
            except DialError as error:
                failures.append(str(error))
                continue
            self._swarm().unblock_peer(peer)
            return
        if circuits:
            raise DialError(f"no relay circuit to {peer.to_base58()} worked: {'; '.join(failures)}")

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve `protocol`: `handler` gets each inbound stream (already shielded and capped).

        The stream is reset when the handler returns without closing it or raises.
        """
        io_timeout = self.config.timeouts.stream_io

        async def run(net_stream) -> None:
            stream = Stream(net_stream, io_timeout)
            try:
                await handler(stream)
            except P2PError as error:
                logger.debug("handler for %s ended with %s", protocol, error)
                await stream.reset()

        self._host.set_stream_handler(TProtocol(protocol), run)

    async def ping(self, peer_id: str, *, timeout: float | None = None) -> float:
        """Round-trip time in seconds of one libp2p ping (32 random bytes echoed)."""
        stream = await self.open_stream(peer_id, str(PING_PROTOCOL), timeout=timeout)
        payload = os.urandom(32)
        started = time.perf_counter()
        await stream.write(payload, timeout=timeout)
        echoed = await stream.read_exactly(32, timeout=timeout)
        rtt = time.perf_counter() - started
        await stream.close()
        if echoed != payload:
            raise DialError(f"{peer_id} answered ping with the wrong bytes")
        return rtt

    # ---- relays ----
    async def reserve_relay(self, relay_addr: str) -> str:
        """Make a circuit-relay v2 reservation on `relay_addr` and return our circuit address through it."""
        relay_id = await self.connect(relay_addr)
        relay = ID.from_base58(relay_id)
        discovery = self._relay_transport.discovery
        deadline = self.deadline(self.config.timeouts.dial, RESERVATION_ROUND_TRIPS, relay_id)
        try:
            with trio.fail_after(deadline):
                # Relay discovery reads the relay's protocols from the peerstore and takes an empty
                # list (identify still running) as "not a relay": wait for identify first.
                await self._wait_protocols_known(relay)
                await discovery.discover_relays()  # DESIGN.md: make_reservation fails without it
                ok = await discovery.make_reservation(relay)
        except trio.TooSlowError as error:
            raise DialError(f"reservation on {relay_id} timed out") from error
        if not ok:
            raise DialError(f"relay {relay_id} refused a reservation")
        base = multiaddr.Multiaddr(relay_addr)
        circuit = multiaddr.Multiaddr(f"{base}/p2p-circuit/p2p/{self.peer_id}")
        if circuit not in self._circuit_addrs:
            self._circuit_addrs.append(circuit)
        return str(circuit)

    async def _wait_protocols_known(self, peer: ID) -> None:
        peerstore = self._host.get_peerstore()
        while True:
            with contextlib.suppress(Exception):  # PeerStoreError until identify has stored anything
                if peerstore.get_protocols(peer):
                    return
            await trio.sleep(0.02)

    # ---- reachability ----
    async def probe_reachability(self, peer_id: str) -> bool:
        """Ask `peer_id` to dial us back on our direct addresses (see p2p.reachability)."""
        stream = await self.open_stream(peer_id, REACHABILITY_PROTOCOL)
        try:
            return await reachability.request_probe(stream, self.direct_addrs())
        except P2PError:
            await stream.reset()
            raise

    async def _answer_probe(self, stream: Stream) -> None:
        await reachability.answer_probe(stream, stream.remote_ip, self.config.timeouts.reachability_probe)

    # ---- background upkeep ----
    async def _settle_reachability(self) -> None:
        mode = self.config.reachability
        if mode is Reachability.PUBLIC:
            self.reachable = True
        elif mode is Reachability.PRIVATE or not self.config.listen:
            self.reachable = False
        else:
            self.reachable = False
            for peer in self.connected_peers():
                try:
                    if await self.probe_reachability(peer):
                        self.reachable = True
                        break
                except P2PError as error:
                    logger.debug("reachability probe via %s failed: %s", peer, error)
        server = self.config.dht_mode is DhtMode.SERVER or (
            self.config.dht_mode is DhtMode.AUTO and bool(self.reachable)
        )
        # No identify/push here: in py-libp2p 0.8.1 a push makes every gossipsub peer re-GRAFT, which its
        # GRAFT-flood check then penalises (measured: 95%-delivery latency 30 ms -> 5 s in a 30-peer swarm).
        await self.dht.set_server_mode(server)

    def alone(self) -> bool:
        """Whether this host has bootstrap peers configured and is connected to nobody."""
        return bool(self.config.bootstrap) and not self._host.get_connected_peers()

    def bootstrap_failure(self) -> str:
        """One line on why no bootstrap peer answered, naming each address and its reason."""
        reasons = "; ".join(f"{addr}: {why}" for addr, why in self.bootstrap_failures.items())
        return f"no bootstrap peer answered ({reasons})"

    async def _dial_bootstrap(self) -> None:
        """Dial every bootstrap peer at once (each dial costs round trips); failures land in
        `bootstrap_failures`."""
        failures: dict[str, str] = {}

        # A bootstrap peer is named by the operator: dial it again whatever py-libp2p's cache of recently
        # failed peers says (it would refuse the dial for a minute after a failure).
        for peer_id in self._bootstrap_peers():
            self._swarm().unblock_peer(peer_id)

        async def join(addr: str) -> None:
            try:
                peer = await self.connect(addr)
                await self.dht.add_peer(peer)
            except P2PError as error:
                failures[addr] = str(error).removeprefix(f"dialling {addr} ").removeprefix("failed: ")

        async with trio.open_nursery() as nursery:
            for addr in self.config.bootstrap:
                nursery.start_soon(join, addr)
        self.bootstrap_failures = failures

    async def _bootstrap(self) -> None:
        """Join through the bootstrap peers. A light client that reaches none raises BootstrapUnreachable;
        a serving peer says so once and keeps dialling them (`_upkeep`)."""
        await self._dial_bootstrap()
        if self.alone():
            if self.config.asks_only:
                raise BootstrapUnreachable(self.bootstrap_failure())
            logger.warning(
                "%s: this peer is alone on the network until one does, and dials them again every %g s "
                "(--bootstrap takes the /p2p/ address a running node or relay prints in its ready.json)",
                self.bootstrap_failure(),
                BOOTSTRAP_RETRY_SECONDS,
            )
            return  # nobody to probe reachability or reserve a circuit with: `_upkeep` joins later
        if self.bootstrap_failures:
            logger.info("some bootstrap peers did not answer: %s", self.bootstrap_failure())
        if self.config.asks_only:
            # Nobody dials it, so nothing to probe or reserve, and its lookups walk the DHT themselves.
            self.reachable = False
            return
        await self._join_network()

    async def _join_network(self) -> None:
        """What a serving peer does once it has peers: learn whether it is reachable, hold relay
        reservations if not, fill its routing table."""
        await self._settle_reachability()
        if not self.reachable:
            await self._reserve_bootstrap_relays(log_failures=True)
        await self.dht.refresh()

    async def _reserve_bootstrap_relays(self, *, log_failures: bool = False) -> None:
        for addr in self.config.bootstrap:
            try:
                await self.reserve_relay(addr)
            except P2PError as error:
                if log_failures:
                    logger.info("no relay reservation on %s: %s", addr, error)

    async def _hang_up(self) -> None:
        """Close every connection before the host stops: py-libp2p's own stop leaves their sockets open,
        so a peer closed inside a running process (a gateway's, a test's) stayed connected to its relay
        with its circuits and streams, until the relay's write timeouts tore them down."""
        network = self._host.get_network()
        with trio.move_on_after(HANG_UP_SECONDS, shield=True):
            async with trio.open_nursery() as nursery:  # at once: one slow peer does not hold the rest
                for peer in list(network.connections):
                    nursery.start_soon(network.close_peer, peer)

    async def _upkeep(self) -> None:
        last_reservation = time.monotonic()
        while True:
            await trio.sleep(BOOTSTRAP_RETRY_SECONDS if self.alone() else DHT_REFRESH_SECONDS)
            if self.alone():
                await self._dial_bootstrap()
                if not self.alone():
                    logger.info("joined the network: a bootstrap peer answered")
                    await self._join_network()
                    last_reservation = time.monotonic()
                continue
            await self.dht.refresh()
            if not self.reachable and time.monotonic() - last_reservation > RESERVATION_REFRESH_SECONDS:
                last_reservation = time.monotonic()
                await self._reserve_bootstrap_relays()


def attach_libp2p_logging() -> None:
    """Give py-libp2p's log records back to the root logger's handlers.

    Importing py-libp2p detaches its loggers (propagate False and no handler, unless LIBP2P_DEBUG is set):
    its warnings then skip every handler and reach stderr through logging.lastResort, bare, multi-line and
    whatever the configured level. Attached again, they meet the daemon's handlers and filters."""
    if not os.environ.get("LIBP2P_DEBUG"):  # with it, py-libp2p writes its own debug log: leave that be
        logging.getLogger("libp2p").propagate = True


async def _never_auto_dial() -> None:
    return None


def dial_failure_reason(error: BaseException) -> str:
    """The root cause of a failed dial in a few words: py-libp2p wraps an OS error ("Connection refused")
    in four layers of its own errors and exception groups; without one, the outermost message."""
    for cause in _causes(error):
        if isinstance(cause, CircuitRefused):
            return str(cause)
        if isinstance(cause, OSError) and isinstance(cause.errno, int):
            return os.strerror(cause.errno)
    return str(error) or type(error).__name__


def _refused_protocol(error: BaseException) -> bool:
    """Whether `error` is the peer answering "na" to every protocol offered: py-libp2p 0.8.1 says so only
    in the message of a plain MultiselectClientError (the ProtocolNotSupportedError is not chained)."""
    return isinstance(error, ProtocolNotSupportedError) or (
        isinstance(error, MultiselectClientError) and str(error).startswith("protocols not supported")
    )


def _upgrade_failed(error: BaseException) -> bool:
    """Whether a dial reached the peer and then failed to agree security or a muxer with it (over a
    circuit, the relayed stream breaking mid-handshake surfaces as a bare RawConnError)."""
    upgrade_failures = (SecurityUpgradeFailure, MuxerUpgradeFailure, RawConnError)
    return any(isinstance(cause, upgrade_failures) for cause in _causes(error))


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it was raised from and the members of exception groups, each once."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = getattr(current, "exceptions", None) or getattr(current, "errors", None) or ()
        pending.extend(e for e in (current.__cause__, current.__context__, *nested) if e is not None)


def _is_circuit(addr: multiaddr.Multiaddr | str) -> bool:
    return "/p2p-circuit" in str(addr)


def _relay_of(circuit: multiaddr.Multiaddr) -> str | None:
    """The relay's peer id in `<relay addr>/p2p/<relay>/p2p-circuit/p2p/<peer>`, if it names one."""
    parts = str(circuit).split("/p2p-circuit", 1)[0].split("/p2p/")
    return parts[-1] if len(parts) > 1 else None


@contextlib.asynccontextmanager
async def open_host(config: HostConfig) -> AsyncIterator[DolphinHost]:
    """Start a host per `config`, bootstrap it, and yield it; everything stops when the block exits.

    On entry the host listens, has dialled its bootstrap peers, knows whether it is reachable, holds
    relay reservations if it is not, and has refreshed its routing table. A `listen` port another
    process holds raises PortInUse before anything starts; an `asks_only` host that reaches none of its
    bootstrap peers raises BootstrapUnreachable (a serving host keeps trying, see `_upkeep`).
    """
    check_listen_addrs(config.listen)
    install_exclusive_tcp_listeners()
    install_bounded_stream_resets()
    install_pipelined_selection(LAZY_STREAM_PROTOCOLS)
    install_whole_noise_frames()
    key_pair = ephemeral_identity() if config.ephemeral_identity else load_or_create_identity(config.data_dir)
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    swarm = new_swarm(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},  # Noise only: DESIGN.md, plaintext is accepted by default
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(
            max_connections=config.limits.max_connections,
            # No auto-dialling of remembered peers to keep a count up: who we talk to is our decision.
            min_connections=0,
            low_watermark=0,
            high_watermark=config.limits.max_connections * 3 // 4,
            max_connections_per_peer=1,
            # Ours (DolphinHost.deadline) bound every dial and stream open, and grow with distance.
            dial_timeout=LIBP2P_CEILING_SECONDS,
            inbound_upgrade_timeout=INBOUND_HANDSHAKE_SECONDS,
            outbound_upgrade_timeout=LIBP2P_CEILING_SECONDS,
            outbound_stream_protocol_negotiation_timeout=LIBP2P_CEILING_SECONDS,
            inbound_stream_protocol_negotiation_timeout=INBOUND_HANDSHAKE_SECONDS,
        ),
    )
    # The swarm's auto-connector dials remembered peers until it holds half of high_watermark
    # connections; peers are chosen by the DHT, gossip and pool code here, never at random.
    swarm.auto_connector.maybe_connect = _never_auto_dial  # type: ignore[attr-defined]  # no switch for it
    holder: list[DolphinHost] = []

    def advertised(candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        # The direct part of what identify advertises (_ShieldedHost.get_addrs adds the circuits):
        # unreachable peers announce only their relay circuits.
        if not holder:
            return candidates
        dolphin = holder[0]
        announced = [multiaddr.Multiaddr(a) for a in dolphin.config.announce] or list(candidates)
        return announced if dolphin.reachable is not False else []

    host = _ShieldedHost(
        network=swarm,
        negotiate_timeout=INBOUND_HANDSHAKE_SECONDS,
        addrs_factory=advertised,
        max_inbound_per_protocol=config.limits.inbound_streams_per_protocol,
        # Streams that live as long as what they carry: a circuit's hop streams at the relay (py-libp2p
        # holds two per circuit), each connected peer's gossip stream.
        inbound_caps={
            str(HOP_PROTOCOL): 2 * config.limits.relay_max_circuits,
            **{str(protocol): config.limits.max_connections for protocol in GOSSIP_PROTOCOLS},
        },
    )
    limits = RelayLimits(
        duration=config.limits.relay_circuit_seconds,
        data=config.limits.relay_circuit_bytes,
        max_circuit_conns=config.limits.relay_max_circuits,
        max_reservations=config.limits.relay_max_reservations,
    )
    relay_protocol = _CircuitRelay(host, limits=limits, allow_hop=config.relay_service)
    roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if config.relay_service else RelayRole(0))
    relay_config = RelayConfig(roles=roles, limits=limits)
    relay_transport = _PipelinedCircuitTransport(host, relay_protocol, relay_config)
    router = build_router(config.gossip_heartbeat_seconds)
    pubsub = build_pubsub(host, router, config.limits.max_gossip_payload)
    kad = build_kad(
        host,
        DHTMode.SERVER if config.dht_mode is DhtMode.SERVER else DHTMode.CLIENT,
        stream_idle=config.timeouts.dht_stream_idle,
        inbound_streams=config.limits.inbound_streams_per_protocol,  # the host's cap on every protocol
        streams_per_peer=config.limits.dht_streams_per_peer,
    )
    dolphin = DolphinHost(
        config,
        host,
        Gossip(pubsub, router, config.limits.max_gossip_payload),
        Dht(kad, host, config.timeouts.dht_query),
        relay_transport,
    )
    holder.append(dolphin)
    dolphin.dht.recover = dolphin._recover_servers
    host.circuit_addrs = lambda: list(dolphin._circuit_addrs)
    dolphin.set_stream_handler(REACHABILITY_PROTOCOL, dolphin._answer_probe)
    puncher = HolePuncher(dolphin, allow_private=config.hole_punch_private_addrs)
    dolphin.hole_punches = puncher.counts
    if config.hole_punching:
        dolphin.set_stream_handler(DCUTR_PROTOCOL, puncher.serve)
        swarm.register_notifee(puncher.notifee)
    listen = [multiaddr.Multiaddr(a) for a in config.listen]
    unreachable: BootstrapUnreachable | None = None
    async with (
        host.run(listen_addrs=listen),
        background_trio_service(relay_protocol),
        background_trio_service(relay_transport.discovery),
        background_trio_service(pubsub),
        background_trio_service(router),
        background_trio_service(kad),
        trio.open_nursery() as nursery,
    ):
        await pubsub.wait_until_ready()
        nursery.start_soon(puncher.run)
        try:
            await dolphin._bootstrap()
        except BootstrapUnreachable as error:
            unreachable = error  # raised below, once the services stopped: as itself, not in a group
            nursery.cancel_scope.cancel()
        else:
            nursery.start_soon(dolphin._upkeep)
            try:
                yield dolphin
            finally:
                nursery.cancel_scope.cancel()
                await dolphin._hang_up()
    if unreachable is not None:
        raise unreachable
