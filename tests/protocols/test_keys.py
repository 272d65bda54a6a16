import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import DecodeError, SchemaError, SignatureError
from protocols.keys import (
    EncryptionKeyPair,
    Identity,
    peer_id_from_text,
    peer_id_to_text,
    public_key_from_peer_id,
    verify_ed25519,
)

pytestmark = pytest.mark.unit


@given(st.binary(min_size=32, max_size=32))
def test_peer_id_round_trips(seed):
    ident = Identity(seed)
    assert public_key_from_peer_id(ident.peer_id) == ident.public_key
    assert peer_id_from_text(peer_id_to_text(ident.peer_id)) == ident.peer_id
    assert peer_id_to_text(ident.peer_id).startswith("12D3KooW")


@given(st.binary(max_size=40))
def test_base58_round_trips_any_bytes(data):
    assert peer_id_from_text(peer_id_to_text(data)) == data if data else True


def test_peer_ids_and_signatures_equal_py_libp2p():
    """Against the real thing: a py-libp2p key made from the same seed has the same peer id and signatures."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    for seed in (b"\x01" * 32, bytes(range(32))):
        pair = create_new_key_pair(seed)
        ident = Identity(seed)
        assert ident.public_key == pair.public_key.to_bytes()
        assert ident.peer_id == ID.from_pubkey(pair.public_key).to_bytes()
        assert peer_id_to_text(ident.peer_id) == ID.from_pubkey(pair.public_key).to_base58()
        signature = pair.private_key.sign(b"hello")
        verify_ed25519(ident.public_key, b"hello", signature)
        assert ident.sign(b"hello") == signature


def test_bad_inputs():
    ident = Identity(b"\x02" * 32)
    signature = ident.sign(b"m")
    with pytest.raises(SignatureError):
        verify_ed25519(ident.public_key, b"M", signature)
    with pytest.raises(SignatureError):
        verify_ed25519(Identity(b"\x03" * 32).public_key, b"m", signature)
    with pytest.raises(SignatureError):
        verify_ed25519(ident.public_key, b"m", signature[:63])
    with pytest.raises(SignatureError):
        verify_ed25519(b"\x00" * 31, b"m", signature)
    with pytest.raises(SchemaError):
        public_key_from_peer_id(b"\x12\x20" + b"\0" * 32)  # a sha256 multihash (RSA-style id)
    with pytest.raises(DecodeError):
        peer_id_from_text("12D3KooW0OIl")  # 0, O, I, l are not base58
    with pytest.raises(SchemaError):
        Identity(b"short")
    with pytest.raises(SchemaError):
        EncryptionKeyPair(b"short")
