"""Signed pool records: round trip, and every kind of bad record is refused with RecordError only."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair
from libp2p.peer.id import ID

from p2p.errors import RecordError
from p2p.identity import signing_seed
from p2p.records import MAX_RECORD_BYTES, MAX_TTL_SECONDS, PoolRecord, decode_pool_record, sign_pool_record
from protocols import codec, envelope
from protocols.keys import Identity
from protocols.messages import PoolAddresses, ResponseChunk
from tests.examples import examples

MANIFEST = bytes(range(32))
ADDRS = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWN5HMqsgjN53dZbPxYtUFWtueNyqTKc4SzUhUxFxASBL1"]
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def key_pair():
    return create_new_key_pair()


def _signed(key_pair, ttl=600) -> PoolRecord:
    return sign_pool_record(key_pair.private_key, ADDRS, MANIFEST, ttl, now=NOW)


def _altered(record: PoolRecord, index: int, value) -> bytes:
    """The record's envelope with one signed item changed and the original signature kept."""
    version, signed_part, signature = codec.unpack(record.raw)
    items = list(codec.unpack(signed_part))
    items[index] = value
    return codec.pack([version, codec.pack(items), signature])


@pytest.mark.unit
def test_round_trip(key_pair):
    record = _signed(key_pair)
    assert decode_pool_record(record.raw, now=NOW) == record
    assert record.expires_at == NOW + 600
    assert (record.addrs, record.manifest_hash) == (tuple(ADDRS), MANIFEST)


@pytest.mark.unit
def test_record_names_the_signers_peer_id(key_pair):
    assert _signed(key_pair).peer_id == ID.from_pubkey(key_pair.public_key).to_base58()


@pytest.mark.unit
@pytest.mark.parametrize(
    "index, value",
    [
        (6, {"model": MANIFEST, "addrs": ["/ip4/10.0.0.1/tcp/1"]}),  # address swapped after signing
        (6, {"model": bytes(32), "addrs": ADDRS}),  # replayed for another model
        (5, (NOW + 3000) * 1000),  # lifetime stretched
        (2, create_new_key_pair().public_key.to_bytes()),  # claims another peer's id
    ],
    ids=["addrs", "model", "expiry", "signer"],
)
def test_tampered_record_is_refused(key_pair, index, value):
    with pytest.raises(RecordError, match="signature"):
        decode_pool_record(_altered(_signed(key_pair), index, value), now=NOW)


@pytest.mark.unit
def test_only_the_canonical_encoding_is_accepted(key_pair):
    """Before, a record verified against a re-encoding of its decoded fields, so other byte forms of the same
    record (here: the signature under a bin16 header where bin8 fits) verified too."""
    raw = _signed(key_pair).raw
    _, signed_part, signature = codec.unpack(raw)
    respelled = codec.pack([envelope.ENVELOPE_VERSION, signed_part])
    respelled = b"\x93" + respelled[1:] + b"\xc5\x00\x40" + signature
    assert codec.unpack(respelled) == codec.unpack(raw)
    with pytest.raises(RecordError, match="canonical"):
        decode_pool_record(respelled, now=NOW)


@pytest.mark.unit
def test_another_signed_message_is_not_a_record(key_pair):
    identity = Identity(signing_seed(key_pair.private_key))
    chunk = envelope.sign(ResponseChunk(seq=0, text="hi"), identity, now_ms=NOW * 1000)
    with pytest.raises(RecordError, match="expected pool.addresses"):
        decode_pool_record(chunk, now=NOW)


@pytest.mark.unit
def test_expired_and_far_future_records_are_refused(key_pair):
    data = _signed(key_pair).raw
    decode_pool_record(data, now=NOW + 600)  # within the clock-skew grace
    with pytest.raises(RecordError, match="expired"):
        decode_pool_record(data, now=NOW + 600 + envelope.EXPIRY_GRACE_MS // 1000)
    with pytest.raises(RecordError, match="future"):
        decode_pool_record(data, now=NOW - 60)


@pytest.mark.unit
def test_limits_at_signing(key_pair):
    with pytest.raises(RecordError, match="ttl"):
        sign_pool_record(key_pair.private_key, ADDRS, MANIFEST, MAX_TTL_SECONDS + 1)
    with pytest.raises(RecordError, match="addrs"):
        sign_pool_record(key_pair.private_key, ADDRS * 9, MANIFEST, 60)
    with pytest.raises(RecordError, match="model"):
        sign_pool_record(key_pair.private_key, ADDRS, b"short", 60)
    with pytest.raises(RecordError, match="multiaddr"):
        sign_pool_record(key_pair.private_key, ["not-an-address"], MANIFEST, 60)
    with pytest.raises(RecordError, match="Ed25519"):
        sign_pool_record(create_secp256k1_key_pair().private_key, ADDRS, MANIFEST, 60)
    long_addrs = [f"/dns4/{'.'.join(['a' * 55] * 4)}.example/tcp/{port}" for port in range(8)]
    with pytest.raises(RecordError, match="over 2048 bytes"):
        sign_pool_record(key_pair.private_key, long_addrs, MANIFEST, 60)


@pytest.mark.unit
def test_a_signed_record_with_a_bad_multiaddr_is_refused(key_pair):
    identity = Identity(signing_seed(key_pair.private_key))
    body = PoolAddresses(model=MANIFEST, addrs=("not-an-address",))
    with pytest.raises(RecordError, match="multiaddr"):
        decode_pool_record(envelope.sign(body, identity, now_ms=NOW * 1000, ttl_ms=60_000), now=NOW)


@pytest.mark.unit
def test_oversized_input_is_refused_before_parsing():
    with pytest.raises(RecordError, match="limit"):
        decode_pool_record(b"\x00" * (MAX_RECORD_BYTES + 1))


@pytest.mark.unit
@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=MAX_RECORD_BYTES + 16))
def test_arbitrary_bytes_raise_only_record_error(data):
    with pytest.raises(RecordError):  # random bytes are never a validly signed record
        decode_pool_record(data, now=NOW)


@pytest.mark.unit
@settings(max_examples=examples(200), deadline=None)
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
