"""Length-prefixed frames for byte streams: unsigned-varint length, then that many bytes.

This is the framing libp2p protocols use on streams (multiformats unsigned-varint spec: little-endian base
128, at most 9 bytes, minimal encoding only), so a js-libp2p or go-libp2p peer can speak it with its stock
helpers. `FrameDecoder` is sans-IO, like h11's receive buffer: feed it whatever bytes arrived, then take
whole frames out; an over-long length prefix is refused as soon as it is read, before its body arrives.
"""

from __future__ import annotations

from protocols.errors import DecodeError, LimitError

__all__ = ["FrameDecoder", "decode_uvarint", "encode_frame", "encode_uvarint"]

_UVARINT_MAX_BYTES = 9  # the spec's cap: 63 bits of payload


def encode_uvarint(value: int) -> bytes:
    """The unsigned-varint encoding of `value` (0 <= value < 2**63)."""
    if type(value) is not int or not 0 <= value < 1 << 63:
        raise DecodeError(f"uvarint out of range: {value!r}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(data: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """Read one uvarint at `offset`: (value, offset after it), or None when `data` ends inside it.

    Raises DecodeError for an over-long or non-minimal encoding (both forbidden by the spec, since they would
    give one number several encodings).
    """
    value = 0
    for i in range(_UVARINT_MAX_BYTES):
        if offset + i >= len(data):
            return None
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise DecodeError("non-minimal uvarint")
            return value, offset + i + 1
    raise DecodeError("uvarint longer than 9 bytes")


def encode_frame(payload: bytes) -> bytes:
    """`payload` with its uvarint length in front."""
    return encode_uvarint(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frames of at most `max_frame` bytes.

    Rules: `feed` appends bytes; `next_frame` returns the next whole frame or None when more bytes are
    needed; a length prefix over `max_frame` raises LimitError at once (before the body arrives), and the
    decoder is then broken for good — the stream should be reset, since its framing is lost.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            raise DecodeError("frame decoder is broken by an earlier error")
        self._buffer += data

    def next_frame(self) -> bytes | None:
        if self._broken:
            raise DecodeError("frame decoder is broken by an earlier error")
        try:
            head = decode_uvarint(self._buffer)
        except DecodeError:
            self._broken = True
            raise
        if head is None:
            return None
        length, start = head
        if length > self.max_frame:
            self._broken = True
            raise LimitError(f"frame of {length} bytes is over the limit of {self.max_frame}")
        if len(self._buffer) - start < length:
            return None
        frame = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        return frame

    def frames(self) -> list[bytes]:
        """Every whole frame available now."""
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._buffer)
