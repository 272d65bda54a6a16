"""The persistent identity survives restarts, is private to its owner, and refuses foreign files."""

import stat

import pytest
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair

from p2p.errors import IdentityError
from p2p.identity import IDENTITY_FILE, load_or_create_identity, peer_id_of


@pytest.mark.unit
def test_identity_is_created_once_and_reused(tmp_path):
    first = load_or_create_identity(tmp_path)
    second = load_or_create_identity(tmp_path)
    assert peer_id_of(first) == peer_id_of(second)
    assert peer_id_of(first).startswith("12D3KooW")  # Ed25519 peer ids (identity multihash)
    assert stat.S_IMODE((tmp_path / IDENTITY_FILE).stat().st_mode) == 0o600


@pytest.mark.unit
def test_corrupt_identity_is_an_identity_error(tmp_path):
    (tmp_path / IDENTITY_FILE).write_bytes(b"garbage")
    with pytest.raises(IdentityError, match="move it away"):
        load_or_create_identity(tmp_path)


@pytest.mark.unit
def test_non_ed25519_identity_is_refused(tmp_path):
    (tmp_path / IDENTITY_FILE).write_bytes(create_secp256k1_key_pair().private_key.serialize())
    with pytest.raises(IdentityError, match="Ed25519"):
        load_or_create_identity(tmp_path)
