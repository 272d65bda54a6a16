"""What the floors above p2p use of a host and a stream, as `typing.Protocol`s.

The node, pool and validator speak request/answer protocols over streams: they open one to a peer, serve
one, and read and write framed messages on it. Typed against these instead of `DolphinHost` and `Stream`,
that code runs unchanged over `p2p.memory` (hosts joined in memory, for unit tests that open no socket)
and over libp2p. The methods and their signatures are `DolphinHost`'s and `Stream`'s own
(tests/p2p/test_memory.py checks both implementations against them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol


class MessageStream(Protocol):
    """One stream to a peer on one protocol, read and written in varint-framed messages."""

    @property
    def peer_id(self) -> str:
        """Base58 peer id of the other end."""
        ...

    async def read_message(self, max_size: int, *, timeout: float | None = None) -> bytes:
        """One message of at most `max_size` bytes (MessageTooLarge over it, StreamError on a reset)."""
        ...

    async def write_message(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send `data` as one message."""
        ...

    async def close(self) -> None:
        """Close our side: the peer reads EOF. Never raises."""
        ...

    async def reset(self) -> None:
        """Abort the stream in both directions. Never raises."""
        ...


StreamHandler = Callable[[MessageStream], Awaitable[None]]
"""Serves one inbound stream; what it raises is contained by the host (the stream is reset)."""


class StreamOpener(Protocol):
    """A peer that opens streams to others and serves protocols on theirs."""

    @property
    def peer_id(self) -> str:
        """Our own base58 peer id."""
        ...

    async def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float | None = None, optimistic: bool = False
    ) -> MessageStream:
        """A new stream to `peer_id` on `protocol`; DialError, or ProtocolNotSupported when the peer does
        not serve it (on the first read when `optimistic`)."""
        ...

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve `protocol`: `handler` gets each inbound stream."""
        ...


class Dialer(StreamOpener, Protocol):
    """A stream opener that can be told to be connected to a peer before it opens streams to it."""

    async def connect_any(self, peer_id: str, addrs: Iterable[str], *, timeout: float | None = None) -> None:
        """Be connected to `peer_id`, through the first of `addrs` that dials; DialError when none does."""
        ...

    async def ensure_connected(self, peer_id: str) -> None:
        """Be connected to `peer_id` through the addresses already known; DialError when none works."""
        ...
