"""A libp2p stream with a deadline on every read and write, raising only p2p errors.

py-libp2p has no keepalive: a frozen peer blocks a reader or writer forever (DESIGN.md). Every await
here runs under `trio.fail_after`, and py-libp2p's own stream exceptions become `StreamError`.
Messages are framed as in most libp2p protocols: an unsigned varint length, then the bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamEOF

from p2p.errors import MessageTooLarge, StreamError, StreamTimeout
from protocols.errors import DecodeError
from protocols.framing import decode_uvarint, encode_uvarint


class Stream:
    """One bidirectional stream to a peer on one protocol."""

    def __init__(self, raw: INetStream, io_timeout: float) -> None:
        self._raw = raw
        self._io_timeout = io_timeout

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
    def protocol(self) -> str:
        """The negotiated protocol id."""
        return str(self._raw.get_protocol())

    async def read(self, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
        """Up to `max_bytes` bytes; b"" once the peer has closed its side."""
        with self._guard(timeout, "read"):
            try:
                return await self._raw.read(max_bytes)
            except StreamEOF:
                return b""

    async def read_exactly(self, size: int, *, timeout: float | None = None) -> bytes:
        """Exactly `size` bytes, all within one deadline; StreamError on an early close."""
        chunks: list[bytes] = []
        remaining = size
        with self._guard(timeout, "read"):
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
