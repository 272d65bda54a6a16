import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import DecodeError, LimitError
from protocols.framing import FrameDecoder, decode_uvarint, encode_frame, encode_uvarint

pytestmark = pytest.mark.unit


@given(st.integers(0, (1 << 63) - 1))
def test_uvarint_round_trip(value):
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded) == (value, len(encoded))
    assert decode_uvarint(encoded[:-1]) is None


def test_uvarint_spec_vectors():
    # From the multiformats unsigned-varint spec.
    for value, encoded in [
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (255, "ff01"),
        (300, "ac02"),
        (16384, "808001"),
    ]:
        assert encode_uvarint(value).hex() == encoded


@pytest.mark.parametrize("data", [b"\x80\x00", b"\xff" * 9 + b"\x01", b"\x81\x80\x00"])
def test_uvarint_refuses_non_minimal_and_overlong(data):
    with pytest.raises(DecodeError):
        decode_uvarint(data)


@given(st.lists(st.binary(max_size=300), max_size=10), st.integers(1, 50))
def test_frames_survive_any_split(payloads, step):
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame=300)
    out = []
    for i in range(0, len(stream), step):
        decoder.feed(stream[i : i + step])
        out += decoder.frames()
    assert out == payloads
    assert decoder.buffered == 0


def test_oversized_frame_is_refused_from_its_prefix_and_breaks_the_decoder():
    decoder = FrameDecoder(max_frame=10)
    decoder.feed(encode_uvarint(11))
    with pytest.raises(LimitError):
        decoder.next_frame()
    with pytest.raises(DecodeError):
        decoder.feed(b"x")
    with pytest.raises(DecodeError):
        decoder.next_frame()
