"""A libp2p stream with a deadline on every read and write, raising only p2p errors.

py-libp2p has no keepalive: a frozen peer blocks a reader or writer forever (DESIGN.md). Every await
here runs under `trio.fail_after`, and py-libp2p's own stream exceptions become `StreamError`.
Messages are framed as in most libp2p protocols: an unsigned varint length, then the bytes.

A stream opened optimistically (`DolphinHost.open_stream(..., optimistic=True)`) has sent its
multistream-select header and protocol without waiting for the answers, as the multistream-select spec
allows an initiator with a single protocol to (go-libp2p's "lazy" client): the request follows at once,
and the peer's two answers are read and checked before the first read returns anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import trio
from libp2p.connection_types import ConnectionType
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.stream.net_stream import NetStream

from p2p.errors import MessageTooLarge, ProtocolNotSupported, StreamError, StreamTimeout
from protocols.errors import DecodeError
from protocols.framing import decode_uvarint, encode_uvarint

MULTISTREAM_PROTOCOL = "/multistream/1.0.0"
_MAX_MULTISTREAM_LINE = 1024  # a protocol id, or "na"


class RawStream(Protocol):
    """What `Stream` uses of the stream under it: py-libp2p's NetStream (its INetStream interface lacks
    `close_write`, which every stream it hands out has), or p2p.memory's pipe."""

    @property
    def muxed_conn(self) -> Any: ...
    def get_protocol(self) -> Any: ...
    def get_remote_address(self) -> Any: ...
    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close_write(self) -> None: ...
    async def close(self) -> None: ...
    async def reset(self) -> None: ...


# A reset sends one frame; one that cannot be sent in this time is given up (the stream counts as reset).
STREAM_RESET_SECONDS = 5.0


def install_bounded_stream_resets() -> None:
    """Give py-libp2p's stream resets a deadline (idempotent).

    py-libp2p resets a stream that failed to open inside a shielded scope, with no deadline; the reset
    waits for its connection's write lock, which a write stuck on a peer that stopped reading holds for as
    long as that lasts. Two peers stopping at once could each wait on the other for good: validators ignored
    SIGTERM that way after a money-loop test (their task trees, `kill -USR1`, showed it). A reset that
    gives up leaves the stream closed both ways, as one whose frame could not be sent does."""
    if getattr(NetStream.reset, "_bounded", False):
        return
    unbounded = NetStream.reset

    async def reset(self: NetStream) -> None:
        with trio.move_on_after(STREAM_RESET_SECONDS):
            await unbounded(self)

    reset._bounded = True  # type: ignore[attr-defined]  # marks the replacement, for idempotence
    NetStream.reset = reset  # type: ignore[method-assign]  # py-libp2p has no setting for it


def multistream_line(text: str) -> bytes:
    """One multistream-select message: a varint length, the text, a newline (multistream-select spec)."""
    line = text.encode() + b"\n"
    return encode_uvarint(len(line)) + line


class Stream:
    """One bidirectional stream to a peer on one protocol."""

    def __init__(self, raw: RawStream, io_timeout: float, *, unconfirmed_protocol: str | None = None) -> None:
        self._raw = raw
        self._io_timeout = io_timeout
        self._unconfirmed = unconfirmed_protocol  # sent optimistically, the peer's answer not read yet

    @property
    def peer_id(self) -> str:
        """Base58 peer id of the other end."""
        return self._raw.muxed_conn.peer_id.to_base58()

    @property
    def remote_ip(self) -> str | None:
        """The IP the stream's connection comes from, when the transport knows it (not for relayed ones)."""
        try:
            address = self._raw.get_remote_address()
        except Exception:  # some muxed streams do not implement it
            return None
        return address[0] if address else None

    @property
    def relayed(self) -> bool:
        """Whether the stream's connection runs through a relay circuit."""
        try:
            return self._raw.muxed_conn.get_connection_type() == ConnectionType.RELAYED
        except Exception:  # a muxer that does not say is not a circuit's
            return False

    @property
    def protocol(self) -> str:
        """The negotiated protocol id."""
        return str(self._raw.get_protocol())

    async def read(self, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
        """Up to `max_bytes` bytes; b"" once the peer has closed its side."""
        await self._confirm_protocol(timeout)
        with self._guard(timeout, "read"):
            try:
                return await self._raw.read(max_bytes)
            except StreamEOF:
                return b""

    async def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        """Exactly `size` bytes, all within one deadline; StreamError on an early close."""
        await self._confirm_protocol(timeout)
        with self._guard(timeout, "read"):
            return await self._read_exactly(size)

    async def _read_exactly(self, size: int) -> bytes:
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            try:
                chunk = await self._raw.read(remaining)
            except StreamEOF:
                chunk = b""
            if not chunk:
                raise StreamError(f"peer closed the stream {remaining} bytes short of {size}")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    async def write(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send all of `data`."""
        with self._guard(timeout, "write"):
            await self._raw.write(data)

    async def read_message(self, max_size: int, *, timeout: float | None = None) -> bytes:
        """One varint-length-prefixed message of at most `max_size` bytes."""
        await self._confirm_protocol(timeout)
        with self._guard(timeout, "read"):
            length = await self._read_varint()
            if length > max_size:
                raise MessageTooLarge(f"peer announced a {length}-byte message, limit is {max_size}")
            return await self.read_exactly(length, timeout=timeout) if length else b""

    async def write_message(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send `data` as one varint-length-prefixed message."""
        await self.write(encode_uvarint(len(data)) + data, timeout=timeout)

    async def close_write(self) -> None:
        """Half-close: the peer reads EOF (end of request) while we can still read its answer."""
        with self._guard(None, "close"):
            await self._raw.close_write()

    async def close(self) -> None:
        """Close our side; the peer reads EOF. Never raises (the peer may already be gone)."""
        with trio.move_on_after(self._io_timeout), contextlib.suppress(Exception):
            await self._raw.close()

    async def reset(self) -> None:
        """Abort the stream in both directions. Never raises."""
        with trio.move_on_after(self._io_timeout), contextlib.suppress(Exception):
            await self._raw.reset()

    async def _confirm_protocol(self, timeout: float | None) -> None:
        """Read the peer's answers to an optimistic protocol selection: the multistream header, then our
        protocol echoed (ProtocolNotSupported when it says "na" instead)."""
        protocol, self._unconfirmed = self._unconfirmed, None
        if protocol is None:
            return
        with self._guard(timeout, "read"):
            header = await self._read_multistream_line()
            answer = await self._read_multistream_line()
        if header != MULTISTREAM_PROTOCOL:
            raise StreamError(f"{self.peer_id} answered {header[:80]!r}, not a multistream-select header")
        if answer != protocol:
            raise ProtocolNotSupported(f"{self.peer_id} does not speak {protocol} (answered {answer[:80]!r})")

    async def _read_multistream_line(self) -> str:
        length = await self._read_varint()
        if not 0 < length <= _MAX_MULTISTREAM_LINE:
            raise StreamError(f"multistream-select message of {length} bytes")
        line = await self._read_exactly(length)
        if not line.endswith(b"\n"):
            raise StreamError("multistream-select message without its newline")
        return line[:-1].decode(errors="replace")

    async def _read_varint(self) -> int:
        """The length prefix, read a byte at a time and decoded by the spec-strict `decode_uvarint` (at most
        9 bytes, minimal encoding only): the one reading of a frame's length, here and in tests."""
        prefix = bytearray()
        while True:
            try:
                byte = await self._raw.read(1)
            except StreamEOF:
                byte = b""
            if not byte:
                raise StreamError("peer closed the stream inside a length prefix")
            prefix += byte
            try:
                decoded = decode_uvarint(bytes(prefix))
            except DecodeError as error:
                raise StreamError(f"malformed length prefix: {error}") from error
            if decoded is not None:
                return decoded[0]

    @contextlib.contextmanager
    def _guard(self, timeout: float | None, what: str) -> Iterator[None]:
        deadline = self._io_timeout if timeout is None else timeout
        try:
            with trio.fail_after(deadline):
                yield
        except trio.TooSlowError as error:
            raise StreamTimeout(f"stream {what} to {self.peer_id} took over {deadline} s") from error
        except StreamError:
            raise
        except Exception as error:  # py-libp2p raises StreamReset/StreamClosed/IOException/RawConnError...
            raise StreamError(f"stream {what} to {self.peer_id} failed: {error!r}") from error
