"""Signed pool records: round trip, and every kind of bad record is refused with RecordError only."""

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair

from p2p.errors import RecordError
from p2p.records import (
    MAX_RECORD_BYTES,
    MAX_TTL_SECONDS,
    PoolRecord,
    decode_pool_record,
    encode_pool_record,
    sign_pool_record,
)

MANIFEST = bytes(range(32))
ADDRS = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWN5HMqsgjN53dZbPxYtUFWtueNyqTKc4SzUhUxFxASBL1"]
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def key_pair():
    return create_new_key_pair()


def _signed(key_pair, **overrides):
    record = sign_pool_record(key_pair.private_key, ADDRS, MANIFEST, 600, now=NOW)
    return dataclasses.replace(record, **overrides) if overrides else record


@pytest.mark.unit
def test_round_trip(key_pair):
    record = _signed(key_pair)
    assert decode_pool_record(encode_pool_record(record), now=NOW) == record
    assert record.expires_at == NOW + 600


@pytest.mark.unit
def test_record_names_the_signers_peer_id(key_pair):
    from libp2p.peer.id import ID

    assert _signed(key_pair).peer_id == ID.from_pubkey(key_pair.public_key).to_base58()


@pytest.mark.unit
@pytest.mark.parametrize(
    "field, value",
    [
        ("addrs", ("/ip4/10.0.0.1/tcp/1",)),  # address swapped after signing
        ("manifest_hash", bytes(32)),  # replayed for another model
        ("expires_at", NOW + 3000),  # lifetime stretched
        ("signature", bytes(64)),
    ],
)
def test_tampered_record_is_refused(key_pair, field, value):
    with pytest.raises(RecordError, match="signature"):
        decode_pool_record(encode_pool_record(_signed(key_pair, **{field: value})), now=NOW)


@pytest.mark.unit
def test_record_claiming_another_peer_id_is_refused(key_pair):
    other = sign_pool_record(create_new_key_pair().private_key, ADDRS, MANIFEST, 600, now=NOW)
    forged = _signed(key_pair, peer_id=other.peer_id)
    with pytest.raises(RecordError, match="signature"):
        decode_pool_record(encode_pool_record(forged), now=NOW)


@pytest.mark.unit
def test_expired_and_far_future_records_are_refused(key_pair):
    data = encode_pool_record(_signed(key_pair))
    with pytest.raises(RecordError, match="expired"):
        decode_pool_record(data, now=NOW + 601)
    with pytest.raises(RecordError, match="further ahead"):
        decode_pool_record(data, now=NOW - MAX_TTL_SECONDS)


@pytest.mark.unit
def test_limits_at_signing(key_pair):
    with pytest.raises(RecordError, match="ttl"):
        sign_pool_record(key_pair.private_key, ADDRS, MANIFEST, MAX_TTL_SECONDS + 1)
    with pytest.raises(RecordError, match="addresses"):
        sign_pool_record(key_pair.private_key, ADDRS * 9, MANIFEST, 60)
    with pytest.raises(RecordError, match="manifest hash"):
        sign_pool_record(key_pair.private_key, ADDRS, b"short", 60)
    with pytest.raises(RecordError, match="multiaddr"):
        sign_pool_record(key_pair.private_key, ["not-an-address"], MANIFEST, 60)
    with pytest.raises(RecordError, match="Ed25519"):
        sign_pool_record(create_secp256k1_key_pair().private_key, ADDRS, MANIFEST, 60)


@pytest.mark.unit
def test_oversized_input_is_refused_before_parsing():
    with pytest.raises(RecordError, match="limit"):
        decode_pool_record(b"\x00" * (MAX_RECORD_BYTES + 1))


@pytest.mark.unit
def test_non_ed25519_peer_id_is_refused(key_pair):
    record = _signed(key_pair, peer_id="QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")  # an RSA-style id
    with pytest.raises(RecordError):
        decode_pool_record(encode_pool_record(record), now=NOW)


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_RECORD_BYTES + 16))
def test_arbitrary_bytes_raise_only_record_error(data):
    with pytest.raises(RecordError):  # random bytes are never a validly signed record
        decode_pool_record(data, now=NOW)


@pytest.mark.unit
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.binary(max_size=40),
            st.text(max_size=40),
            st.none(),
            st.lists(st.text()),
        ),
        max_size=8,
    )
)
def test_arbitrary_msgpack_arrays_raise_only_record_error(fields):
    with pytest.raises(RecordError):
        decode_pool_record(msgpack.packb(fields, use_bin_type=True), now=NOW)


@pytest.mark.unit
def test_signing_bytes_are_domain_separated(key_pair):
    assert _signed(key_pair).signing_bytes().startswith(b"dolphin/pool-record/v1\x00")
    assert isinstance(_signed(key_pair), PoolRecord)
