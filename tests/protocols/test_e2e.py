import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec, e2e
from protocols.errors import DecodeError, DecryptError, ProtocolError, SchemaError, StreamError
from protocols.testing import encryption_keys
from tests.examples import examples

pytestmark = pytest.mark.unit

NODE, OTHER = encryption_keys(1), encryption_keys(2)


@given(st.binary(max_size=5000))
def test_seal_round_trip_and_both_sides_share_the_response_key(plaintext):
    sealed, client_key = e2e.seal(plaintext, NODE.public_key)
    opened, node_key = e2e.open_sealed(sealed, NODE)
    assert opened == plaintext
    assert client_key == node_key


def test_sealed_size_is_padded_and_reveals_only_the_node_key():
    sizes = {len(e2e.seal(b"x" * n, NODE.public_key)[0]) for n in range(0, 3900, 7)}
    assert sizes == {e2e.REQUEST_MIN_BYTES}  # every short prompt looks the same
    sealed, _ = e2e.seal(b"secret prompt", NODE.public_key)
    assert b"secret" not in sealed
    assert codec.unpack(sealed)[1] == NODE.public_key


@pytest.mark.parametrize(
    "size, sealed_size",
    [
        (0, 4096),
        (3980, 4096),
        (3981, 8192),
        (5000, 8192),
        (65_400, 65_536),  # the last bucket whose ciphertext has a bin16 header
        (65_500, 131_072),
        (200_000, 262_144),
        (524_170, 524_288),  # a 512 KiB frame limit admits the 512 KiB bucket
        (524_171, 1_048_576),
    ],
)
def test_every_sealed_request_is_a_power_of_two_bytes(size, sealed_size):
    """A relay learns only which power of two a request's size falls under: the bucket is the size of the
    sealed bytes themselves."""
    sealed, _ = e2e.seal(b"p" * size, NODE.public_key)
    assert len(sealed) == sealed_size
    assert e2e.open_sealed(sealed, NODE)[0] == b"p" * size


def test_wrong_key_is_refused():
    sealed, _ = e2e.seal(b"hi", NODE.public_key)
    with pytest.raises(DecryptError):
        e2e.open_sealed(sealed, OTHER)
    # Relabelled for the other node: the label is authenticated, and the key exchange differs anyway.
    version, _, ephemeral, nonce, ciphertext = codec.unpack(sealed)
    relabelled = codec.pack([version, OTHER.public_key, ephemeral, nonce, ciphertext])
    with pytest.raises(DecryptError):
        e2e.open_sealed(relabelled, OTHER)


@settings(max_examples=examples(200), deadline=None)
@given(st.data())
def test_any_flipped_bit_in_a_sealed_request_is_refused(data):
    sealed, _ = e2e.seal(b"prompt", NODE.public_key)
    position = data.draw(st.integers(0, len(sealed) * 8 - 1))
    flipped = bytearray(sealed)
    flipped[position // 8] ^= 1 << (position % 8)
    with pytest.raises(ProtocolError):
        e2e.open_sealed(bytes(flipped), NODE)


def test_low_order_keys_are_refused():
    with pytest.raises(SchemaError):
        e2e.seal(b"hi", bytes(32))
    sealed, _ = e2e.seal(b"hi", NODE.public_key)
    version, recipient, _, nonce, ciphertext = codec.unpack(sealed)
    with pytest.raises(DecryptError):
        e2e.open_sealed(codec.pack([version, recipient, bytes(32), nonce, ciphertext]), NODE)
    with pytest.raises(DecodeError):
        e2e.open_sealed(codec.pack([2, recipient, bytes(32), nonce, ciphertext]), NODE)


def _stream(n=3):
    key = b"k" * 32
    sealer = e2e.StreamSealer(key)
    frames = [sealer.seal(f"message {i}".encode(), final=i == n - 1) for i in range(n)]
    return key, sealer.header, frames


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_stream_round_trip(payloads):
    key = b"k" * 32
    sealer = e2e.StreamSealer(key)
    frames = [sealer.seal(p, final=i == len(payloads) - 1) for i, p in enumerate(payloads)]
    opener = e2e.StreamOpener(key, sealer.header)
    assert [opener.open(f) for f in frames] == [(p, i == len(payloads) - 1) for i, p in enumerate(payloads)]
    opener.close()


def test_stream_message_sizes_are_powers_of_two():
    sealer = e2e.StreamSealer(b"k" * 32)
    opener = e2e.StreamOpener(b"k" * 32, sealer.header)
    sizes = {}
    for n in range(0, 1200, 3):
        ciphertext = sealer.seal(b"t" * n)
        assert opener.open(ciphertext) == (b"t" * n, False)
        sizes.setdefault(len(ciphertext), []).append(n)
    assert sorted(sizes) == [256, 512, 1024, 2048]
    assert max(sizes[256]) >= 230  # any single token, with its id and logprob, fits the smallest size


def test_reordered_chunk_is_refused():
    key, header, frames = _stream()
    opener = e2e.StreamOpener(key, header)
    with pytest.raises(StreamError):
        opener.open(frames[1])
    with pytest.raises(StreamError):  # broken for good
        opener.open(frames[0])


def test_replayed_chunk_is_refused():
    key, header, frames = _stream()
    opener = e2e.StreamOpener(key, header)
    opener.open(frames[0])
    with pytest.raises(StreamError):
        opener.open(frames[0])


def test_truncated_stream_is_detected():
    key, header, frames = _stream()
    opener = e2e.StreamOpener(key, header)
    opener.open(frames[0])
    opener.open(frames[1])
    with pytest.raises(StreamError, match="truncated"):
        opener.close()


def test_dropped_final_chunk_cannot_be_faked_by_cutting_ciphertext():
    key, header, frames = _stream()
    opener = e2e.StreamOpener(key, header)
    opener.open(frames[0])
    for bad in (frames[1][:-1], frames[1] + b"\0", b""):
        with pytest.raises(StreamError):
            e2e.StreamOpener(key, header).open(bad)


def test_flipped_bit_wrong_key_wrong_header_and_data_after_the_end():
    key, header, frames = _stream()
    flipped = bytearray(frames[0])
    flipped[-1] ^= 1
    with pytest.raises(StreamError):
        e2e.StreamOpener(key, header).open(bytes(flipped))
    with pytest.raises(StreamError):
        e2e.StreamOpener(b"K" * 32, header).open(frames[0])
    with pytest.raises(StreamError):
        e2e.StreamOpener(key, header[:-1])
    opener = e2e.StreamOpener(key, header)
    for f in frames:
        opener.open(f)
    with pytest.raises(StreamError):
        opener.open(frames[-1])


def test_sealer_refuses_to_continue_after_final():
    sealer = e2e.StreamSealer(b"k" * 32)
    sealer.seal(b"end", final=True)
    with pytest.raises(StreamError):
        sealer.seal(b"more")


@given(st.binary(max_size=600), st.integers(1, 300))
def test_padding_is_libsodiums(data, room):
    """Our padding is byte for byte libsodium's sodium_pad to the padded size, so other implementations
    can strip it."""
    import nacl.bindings

    size = len(data) + room
    assert e2e._pad(data, size) == nacl.bindings.sodium_pad(data, size)
    assert e2e._unpad(nacl.bindings.sodium_pad(data, size)) == data


@pytest.mark.parametrize("padded", [b"", b"\0" * 16, b"abc", b"abc\x80\x01\0"])
def test_bad_padding_is_a_decrypt_error(padded):
    with pytest.raises(DecryptError):
        e2e._unpad(padded)
