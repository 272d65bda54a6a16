import tracemalloc

import msgpack
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from protocols import codec
from protocols.errors import DecodeError, LimitError

pytestmark = pytest.mark.unit

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text() | st.binary(),
    lambda c: st.lists(c, max_size=5).map(tuple) | st.dictionaries(st.text(), c, max_size=5),
    max_leaves=20,
)


@given(values)
def test_pack_unpack_round_trip(value):
    assert codec.unpack(codec.pack(value)) == value


@given(st.binary(max_size=20_000), st.integers(1, 22))
def test_zstd_round_trip(data, level):
    assert codec.decompress(codec.compress(data, level), len(data)) == data


@pytest.mark.parametrize(
    "data, error",
    [
        (b"\xca\x00\x00\x00\x00", DecodeError),  # float32
        (b"\xcb" + b"\x7f\xf8" + b"\0" * 6, DecodeError),  # float64 NaN
        (b"\xd6\xff\x00\x00\x00\x00", DecodeError),  # timestamp ext
        (b"\xc7\x00\x05", DecodeError),  # empty ext 5
        (b"\x82\xa1a\x01\xa1a\x02", DecodeError),  # duplicate key
        (b"\x81\x01\x02", DecodeError),  # int key
        (b"\x01\x02", DecodeError),  # trailing bytes
        (b"\x92\x01", DecodeError),  # truncated
        (b"\xc1", DecodeError),  # reserved byte
        (b"\xa2\xff\xfe", DecodeError),  # invalid UTF-8
        (b"\xdd\xff\xff\xff\xff", DecodeError),  # array header claiming 4 billion items
        (b"\x91" * 13 + b"\xc0", LimitError),  # too deep
        (b"\x91" * 5000 + b"\xc0", DecodeError),  # far too deep: refused by msgpack's own stack
        ("not bytes", DecodeError),
    ],
)
def test_unpack_refuses(data, error):
    with pytest.raises(error):
        codec.unpack(data)


def test_limits_on_size_and_container_length():
    limits = codec.Limits(max_bytes=100, max_container=4)
    codec.unpack(codec.pack([1, 2, 3, 4]), limits)
    with pytest.raises(LimitError):
        codec.unpack(b"\xc4\x80" + b"x" * 128, limits)
    with pytest.raises(DecodeError):
        codec.unpack(codec.pack([1, 2, 3, 4, 5]), limits)
    with pytest.raises(DecodeError):
        codec.unpack(codec.pack({str(i): i for i in range(5)}), limits)


def test_depth_limit_is_exact():
    limits = codec.Limits(max_depth=3)
    codec.unpack(codec.pack([[[1]]]), limits)
    with pytest.raises(LimitError):
        codec.unpack(codec.pack([[[[1]]]]), limits)
    with pytest.raises(LimitError):
        codec.unpack(codec.pack({"a": {"b": {"c": {}}}}), limits)


def test_object_budget_counts_every_value_of_every_container():
    limits = codec.Limits(max_objects=8)
    codec.unpack(codec.pack([1, 2, [3, 4, 5]]), limits)  # 1 + 3, then 1 + 3 for the inner array
    with pytest.raises(LimitError, match="decoded values"):
        codec.unpack(codec.pack([1, 2, [3, 4, 5, 6]]), limits)
    codec.unpack(codec.pack({"a": 1, "b": [2]}), limits)  # 1 + 2 * 2, then 1 + 1
    with pytest.raises(LimitError, match="decoded values"):
        codec.unpack(codec.pack({"a": 1, "b": [2, 3, 4]}), limits)


def test_the_largest_messages_fit_the_default_budget():
    from protocols.messages import MAX_TOKENS_PER_CHUNK, AnswerEvidence, ResponseChunk
    from protocols.schema import decode_message, encode_message

    ids = tuple(range(MAX_TOKENS_PER_CHUNK))
    big = ResponseChunk(seq=0, text="x", token_ids=ids, logprobs_micro=tuple(-i for i in ids))
    assert decode_message(encode_message(big)) == big
    evidence = AnswerEvidence(
        request=b"r", chunks=(b"c",) * 2048, receipt=b"e", observed_first_token_ms=1, observed_duration_ms=2
    )
    assert decode_message(encode_message(evidence)) == evidence


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_request_full_of_tiny_objects_is_refused_within_a_few_mib():
    """Before the object budget, 520 KB of empty maps inside a sealed request decoded to 36 MiB before its
    signature was checked (one input byte, one 64-byte dict)."""
    from protocols import e2e, envelope
    from protocols.errors import ProtocolError
    from protocols.inference import NodeExchange
    from protocols.testing import encryption_keys, identity

    now = 1_700_000_000_000
    body = [[{}] * 8192] * 63
    signed_part = codec.pack(["inference.request", 1, b"k" * 32, b"n" * 16, now, now + 60_000, body])
    hostile = codec.pack([envelope.ENVELOPE_VERSION, signed_part, b"s" * 64])
    sealed, _ = e2e.seal(hostile, encryption_keys(2).public_key)
    assert len(hostile) > 500_000

    def accept():
        with pytest.raises(ProtocolError):
            NodeExchange.accept(sealed, identity=identity(2), encryption_keys=encryption_keys(2), now_ms=now)

    without_budget = codec.Limits(max_objects=1 << 30)
    assert _peak_bytes(lambda: codec.unpack(signed_part, without_budget)) > 30 << 20  # what it was
    assert _peak_bytes(accept) < 4 << 20


def test_decompression_bomb_is_refused_before_inflating():
    bomb = codec.compress(b"\0" * (64 << 20))
    assert len(bomb) < 4096
    with pytest.raises(LimitError):
        codec.decompress(bomb, 1 << 20)


def test_zstd_frames_without_size_trailing_data_or_other_magic_are_refused():
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"hello")
    with pytest.raises(DecodeError):
        codec.decompress(unsized, 100)
    frame = codec.compress(b"hello")
    for bad in (frame + b"\0", frame + frame, frame[:-1], b"\x50\x2a\x4d\x18" + frame[4:], b""):
        with pytest.raises(DecodeError):
            codec.decompress(bad, 100)


def test_zstd_frame_lying_about_its_size_is_refused():
    frame = bytearray(codec.compress(b"a" * 50))
    # Frame header: magic(4), descriptor(1), then the single-segment content size byte (50).
    assert frame[5] == 50
    frame[5] = 10
    with pytest.raises(DecodeError):
        codec.decompress(bytes(frame), 100)


def test_pack_refuses_what_msgpack_cannot_hold():
    from protocols.errors import SchemaError

    with pytest.raises(SchemaError):
        codec.pack(1 << 64)
    with pytest.raises(SchemaError):
        codec.pack(object())


def test_msgpack_behaviour_we_rely_on():
    # strict_map_key and tuple decoding are what make decoded values hashable-safe and frozen-friendly.
    assert codec.unpack(msgpack.packb([1, [2]])) == (1, (2,))
