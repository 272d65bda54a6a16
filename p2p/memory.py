"""Hosts joined in memory: the `p2p.interfaces` of a host, for tests that open no socket.

    async with open_memory_network() as network:
        client, node = network.host(), network.host(identity)
        node.set_stream_handler(PROTOCOL, service.handle)
        stream = await client.open_stream(node.peer_id, PROTOCOL)

Only the transport is a double. Each end of a stream is the real `p2p.streams.Stream` over an in-memory
byte pipe, so framing, its size limits and deadlines, optimistic protocol selection and the errors they
raise are the ones a libp2p stream has. A peer's reset reads as the end of the stream and fails the next
write, as over py-libp2p's yamux. A host serves inbound streams as `DolphinHost` does: a handler's
P2PError resets the stream, anything else it raises is contained (counted in `handler_failures`) and
resets it too, and a protocol takes at most `Limits.inbound_streams_per_protocol` streams at once. A peer
that serves no handler for a protocol answers ProtocolNotSupported. Every host of a network knows every
other's address (`/memory/<peer id>`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable

import trio
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamReset
from libp2p.peer.id import ID

from p2p.config import Limits, Timeouts
from p2p.errors import DialError, P2PError, ProtocolNotSupported
from p2p.interfaces import StreamHandler
from p2p.streams import MULTISTREAM_PROTOCOL, Stream, multistream_line
from protocols.keys import Identity, peer_id_from_public_key, peer_id_to_text

logger = logging.getLogger(__name__)

WINDOW_BYTES = 256 * 1024
"""Yamux's initial receive window: a writer waits while this much of what it wrote is still unread."""


class _Link:
    """What both ends of one stream share: which end reset it, if one did, and the two directions to wake
    then."""

    def __init__(self) -> None:
        self.reset_by: object | None = None
        self.pipes: list[_Pipe] = []

    def reset(self, end: object) -> None:
        self.reset_by = self.reset_by or end
        for pipe in self.pipes:
            pipe.wake()


class _Pipe:
    """One direction of a stream: the bytes written and not yet read, and whether the writer closed."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self._buffer = bytearray()
        self._closed = False
        self._changed = trio.Event()
        link.pipes.append(self)

    def wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self.wake()

    def close(self) -> None:
        self._closed = True
        self.wake()

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        while True:
            if self._link.reset_by is not None:
                raise StreamReset("stream reset")
            if self._closed:
                raise StreamClosed("stream closed for writing")
            if len(self._buffer) < WINDOW_BYTES:
                self.feed(data)
                return
            await self._changed.wait()

    async def read(self, max_bytes: int | None, reader: object) -> bytes:
        """As py-libp2p over yamux: after our own reset a read fails, after the peer's it reads the end
        of the stream (what was in flight is dropped)."""
        await trio.lowlevel.checkpoint()
        while True:
            if self._link.reset_by is reader:
                raise StreamReset("stream reset")
            if self._link.reset_by is not None:
                raise StreamEOF()
            if self._buffer:
                size = len(self._buffer) if max_bytes is None else max_bytes
                data = bytes(self._buffer[:size])
                del self._buffer[:size]
                self.wake()
                return data
            if self._closed:
                raise StreamEOF()
            await self._changed.wait()


@dataclasses.dataclass(frozen=True)
class _Connection:
    peer_id: ID


class _MemoryNetStream:
    """One end of a memory stream: the part of py-libp2p's INetStream that `p2p.streams.Stream` drives."""

    def __init__(self, remote: str, protocol: str, incoming: _Pipe, outgoing: _Pipe, link: _Link) -> None:
        self.muxed_conn = _Connection(ID.from_base58(remote))
        self._protocol = protocol
        self._incoming = incoming
        self._outgoing = outgoing
        self._link = link

    def get_protocol(self) -> str:
        return self._protocol

    def get_remote_address(self) -> None:
        return None  # no IP, as for a relayed stream

    async def read(self, n: int | None = None) -> bytes:
        return await self._incoming.read(n, self)

    async def write(self, data: bytes) -> None:
        await self._outgoing.write(data)

    async def close_write(self) -> None:
        await trio.lowlevel.checkpoint()
        self._outgoing.close()

    async def close(self) -> None:
        await self.close_write()  # as yamux's: a half-close, what is still coming can be read

    async def reset(self) -> None:
        await trio.lowlevel.checkpoint()
        self._link.reset(self)


class MemoryNetwork:
    """The hosts that reach each other in memory; their handlers run in the network's nursery."""

    def __init__(self, nursery: trio.Nursery, timeouts: Timeouts, limits: Limits) -> None:
        self._nursery = nursery
        self.timeouts = timeouts
        self.limits = limits
        self._hosts: dict[str, MemoryHost] = {}

    def host(self, identity: Identity | None = None) -> MemoryHost:
        """A new host on this network, with `identity` as its peer key (a fresh one by default)."""
        host = MemoryHost(self, identity or Identity.generate())
        self._hosts[host.peer_id] = host
        return host

    def _find(self, peer_id: str) -> MemoryHost:
        try:
            return self._hosts[peer_id]
        except KeyError:
            raise DialError(f"no known address for {peer_id}: look it up in the DHT first") from None

    def _serve(self, host: MemoryHost, protocol: str, raw: _MemoryNetStream, handler: StreamHandler) -> None:
        self._nursery.start_soon(host._serve, protocol, raw, handler)


@contextlib.asynccontextmanager
async def open_memory_network(
    *, timeouts: Timeouts | None = None, limits: Limits | None = None
) -> AsyncIterator[MemoryNetwork]:
    """A memory network for the block; handlers still running when it exits are cancelled."""
    async with trio.open_nursery() as nursery:
        yield MemoryNetwork(nursery, timeouts or Timeouts(), limits or Limits())
        nursery.cancel_scope.cancel()


class MemoryHost:
    """A peer of a `MemoryNetwork`: a `p2p.interfaces.Dialer` whose streams are `Stream`s over memory."""

    def __init__(self, network: MemoryNetwork, identity: Identity) -> None:
        self._network = network
        self._identity = identity
        self._peer_id = peer_id_to_text(peer_id_from_public_key(identity.public_key))
        self._handlers: dict[str, StreamHandler] = {}
        self._connected: set[str] = set()
        self._inbound_counts: collections.Counter[str] = collections.Counter()
        self.handler_failures = 0

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def signing_seed(self) -> bytes:
        """The peer key's Ed25519 seed, as `DolphinHost.signing_seed`."""
        return self._identity.seed

    def listen_addrs(self) -> list[str]:
        return [f"/memory/{self.peer_id}"]

    async def connect_any(self, peer_id: str, addrs: Iterable[str], *, timeout: float | None = None) -> None:
        await trio.lowlevel.checkpoint()
        if peer_id in self._connected:
            return
        failures = []
        for addr in addrs:
            if addr == f"/memory/{peer_id}" and peer_id in self._network._hosts:
                self._connect(peer_id)
                return
            failures.append(f"dialling {addr} failed: nobody listens there")
        raise DialError(f"no address of {peer_id} dialled: {'; '.join(failures) or 'none given'}")

    async def ensure_connected(self, peer_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._network._find(peer_id)
        self._connect(peer_id)

    def _connect(self, peer_id: str) -> None:
        self._connected.add(peer_id)
        self._network._hosts[peer_id]._connected.add(self.peer_id)

    async def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float | None = None, optimistic: bool = False
    ) -> Stream:
        """As `DolphinHost.open_stream`; `optimistic` puts the peer's multistream-select answers ahead of
        what it sends, for `Stream` to check on the first read."""
        await self.ensure_connected(peer_id)
        remote = self._network._find(peer_id)
        handler = remote._handlers.get(protocol)
        if handler is None and not optimistic:
            raise ProtocolNotSupported(f"{peer_id} does not speak {protocol}")
        link = _Link()
        to_remote, to_local = _Pipe(link), _Pipe(link)
        local_end = _MemoryNetStream(peer_id, protocol, to_local, to_remote, link)
        io_timeout = self._network.timeouts.stream_io
        if optimistic:
            answer = protocol if handler is not None else "na"
            to_local.feed(multistream_line(MULTISTREAM_PROTOCOL) + multistream_line(answer))
        if handler is not None:
            remote_end = _MemoryNetStream(self.peer_id, protocol, to_remote, to_local, link)
            self._network._serve(remote, protocol, remote_end, handler)
        return Stream(local_end, io_timeout, unconfirmed_protocol=protocol if optimistic else None)

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        self._handlers[protocol] = handler

    async def _serve(self, protocol: str, raw: _MemoryNetStream, handler: StreamHandler) -> None:
        stream = Stream(raw, self._network.timeouts.stream_io)
        if self._inbound_counts[protocol] >= self._network.limits.inbound_streams_per_protocol:
            logger.debug("inbound stream cap reached on %s; resetting", protocol)
            await stream.reset()
            return
        self._inbound_counts[protocol] += 1
        try:
            await handler(stream)
        except P2PError as error:
            logger.debug("handler for %s ended with %s", protocol, error)
            await stream.reset()
        except Exception as error:  # the shield: nothing a remote peer sends may end the host
            self.handler_failures += 1
            logger.info("inbound stream from %s failed and was reset: %r", stream.peer_id, error)
            await stream.reset()
        finally:
            self._inbound_counts[protocol] -= 1
