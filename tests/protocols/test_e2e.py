import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec, e2e
from protocols.errors import DecodeError, DecryptError, ProtocolError, SchemaError, StreamError
from protocols.testing import encryption_keys

pytestmark = pytest.mark.unit

NODE, OTHER = encryption_keys(1), encryption_keys(2)


@given(st.binary(max_size=5000))
def test_seal_round_trip_and_both_sides_share_the_response_key(plaintext):
    sealed, client_key = e2e.seal(plaintext, NODE.public_key)
    opened, node_key = e2e.open_sealed(sealed, NODE)
    assert opened == plaintext
    assert client_key == node_key


def test_sealed_size_is_padded_and_reveals_only_the_node_key():
    sizes = {len(e2e.seal(b"x" * n, NODE.public_key)[0]) for n in range(0, 250)}
    assert len(sizes) == 1  # every prompt under one pad block looks the same
    sealed, _ = e2e.seal(b"secret prompt", NODE.public_key)
    assert b"secret" not in sealed
    assert codec.unpack(sealed)[1] == NODE.public_key


def test_wrong_key_is_refused():
    sealed, _ = e2e.seal(b"hi", NODE.public_key)
    with pytest.raises(DecryptError):
        e2e.open_sealed(sealed, OTHER)
    # Relabelled for the other node: the label is authenticated, and the key exchange differs anyway.
    version, _, ephemeral, nonce, ciphertext = codec.unpack(sealed)
    relabelled = codec.pack([version, OTHER.public_key, ephemeral, nonce, ciphertext])
    with pytest.raises(DecryptError):
        e2e.open_sealed(relabelled, OTHER)


@settings(max_examples=200, deadline=None)
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


def test_stream_chunk_sizes_are_padded():
    sealer = e2e.StreamSealer(b"k" * 32)
    assert len({len(sealer.seal(b"t" * n)) for n in range(1, 30)}) == 1


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


@given(st.binary(max_size=600), st.sampled_from([2, 16, 32, 256]))
def test_padding_is_libsodiums(data, block):
    """Our padding is byte for byte libsodium's sodium_pad, so other implementations can strip it."""
    import nacl.bindings

    assert e2e._pad(data, block) == nacl.bindings.sodium_pad(data, block)
    assert e2e._unpad(nacl.bindings.sodium_pad(data, block), block) == data
