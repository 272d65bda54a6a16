"""Stream framing over a memory double of a py-libp2p stream: length prefixes are read as the spec says."""

from types import SimpleNamespace

import pytest
import trio
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.stream.net_stream import NetStream

from p2p import MessageTooLarge, StreamError, streams
from p2p.streams import Stream
from protocols.framing import encode_frame

pytestmark = [pytest.mark.unit, pytest.mark.trio]


class _Raw:
    """What Stream needs of a py-libp2p stream: bytes to read, then EOF."""

    class muxed_conn:  # py-libp2p's attribute names
        class peer_id:
            @staticmethod
            def to_base58() -> str:
                return "12D3KooWdouble"

    def __init__(self, data: bytes) -> None:
        self._data = bytearray(data)

    async def read(self, n: int) -> bytes:
        if not self._data:
            raise StreamEOF()
        chunk = bytes(self._data[:n])
        del self._data[:n]
        return chunk


def _stream(data: bytes) -> Stream:
    return Stream(_Raw(data), io_timeout=5)


async def test_a_framed_message_is_read_whole():
    assert await _stream(encode_frame(b"hello" * 100)).read_message(1024) == b"hello" * 100
    assert await _stream(encode_frame(b"")).read_message(1024) == b""


@pytest.mark.parametrize(
    "data, error",
    [
        (b"\x85\x00hello", "non-minimal uvarint"),  # 5 written in two bytes
        (b"\x80" * 9 + b"\x01hello", "longer than 9 bytes"),
        (b"\x85", "inside a length prefix"),  # the stream ends inside it
    ],
)
async def test_length_prefixes_off_the_spec_are_refused(data, error):
    with pytest.raises(StreamError, match=error):
        await _stream(data).read_message(1024)


async def test_an_announced_length_over_the_limit_is_refused_before_its_body():
    with pytest.raises(MessageTooLarge, match="2048-byte message, limit is 1024"):
        await _stream(encode_frame(b"x" * 2048)[:3]).read_message(1024)


@pytest.mark.timeout(30)  # without the deadline the shielded reset never returns
async def test_a_stream_reset_that_cannot_send_its_frame_gives_up_even_when_shielded(monkeypatch):
    # py-libp2p resets a stream that failed to open in a shielded scope with no deadline; a reset stuck
    # behind a write that never finishes kept daemons from stopping.
    async def stuck() -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(streams, "STREAM_RESET_SECONDS", 0.2)
    streams.install_bounded_stream_resets()
    streams.install_bounded_stream_resets()  # idempotent: one deadline, not two
    stream = NetStream(SimpleNamespace(muxed_conn=None, reset=stuck), None, None)
    with trio.fail_after(5), trio.CancelScope(shield=True):
        await stream.reset()
