import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec, envelope, messages
from protocols.envelope import ReplayCache, open_signed, sign
from protocols.errors import (
    BusyError,
    DecodeError,
    ExpiredError,
    LimitError,
    ProtocolError,
    ReplayError,
    SchemaError,
    SignatureError,
)
from protocols.schema import message_types
from protocols.testing import identity, make_request
from tests.examples import examples
from tests.protocols.strategies import record_strategy

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000
ALL_MESSAGES = sorted(message_types().values(), key=lambda cls: cls.TYPE)
ALICE, BOB = identity(1), identity(2)


def chunk(seq=0):
    return messages.ResponseChunk(seq=seq, text="hello", token_ids=(1, 2))


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
@settings(max_examples=examples(20), deadline=None)
@given(data=st.data())
def test_sign_open_round_trip(cls, data):
    msg = data.draw(record_strategy(cls))
    compress = data.draw(st.sampled_from([None, True, False]))
    ttl = data.draw(st.integers(max(1, cls.MIN_TTL_MS), cls.MAX_TTL_MS))
    raw = sign(msg, ALICE, now_ms=NOW, ttl_ms=ttl, compress=compress)
    opened = open_signed(raw, cls, now_ms=NOW, replay=ReplayCache())
    assert opened.message == msg
    assert opened.signer == ALICE.public_key
    assert opened.peer_id == ALICE.peer_id
    assert (opened.issued_at_ms, opened.expires_at_ms) == (NOW, NOW + ttl)
    assert opened.raw == raw


@settings(max_examples=examples(300), deadline=None)
@given(st.data())
def test_any_flipped_bit_is_refused(data):
    raw = sign(chunk(), ALICE, now_ms=NOW, ttl_ms=60_000)
    position = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[position // 8] ^= 1 << (position % 8)
    with pytest.raises(ProtocolError):
        open_signed(bytes(flipped), now_ms=NOW)


def _forge(cls_for_domain, signed_part_items, signer=ALICE):
    signed_part = codec.pack(signed_part_items)
    signature = signer.sign(envelope._signing_input(envelope.domain_of(cls_for_domain), signed_part))
    return codec.pack([envelope.ENVELOPE_VERSION, signed_part, signature])


def _items(msg, *, signer=ALICE, issued=NOW, expires=NOW + 60_000, nonce=b"n" * 16):
    return [msg.TYPE, msg.VERSION, signer.public_key, nonce, issued, expires, msg.to_wire()]


def test_signature_for_another_type_is_refused_wrong_domain():
    # Identical signed bytes, but signed under the ResponseEnd domain while claiming to be a ResponseChunk.
    forged = _forge(messages.ResponseEnd, _items(chunk()))
    with pytest.raises(SignatureError):
        open_signed(forged, now_ms=NOW)
    assert open_signed(_forge(messages.ResponseChunk, _items(chunk())), now_ms=NOW).message == chunk()


def test_wrong_key_is_refused():
    # Claims Bob as signer, signed by Alice.
    forged = _forge(messages.ResponseChunk, _items(chunk(), signer=BOB), signer=ALICE)
    with pytest.raises(SignatureError):
        open_signed(forged, now_ms=NOW)


def test_validity_window():
    raw = sign(chunk(), ALICE, now_ms=NOW, ttl_ms=1000)
    open_signed(raw, now_ms=NOW + 999)
    open_signed(raw, now_ms=NOW + 1000 + envelope.EXPIRY_GRACE_MS - 1)  # a receiver whose clock is ahead
    with pytest.raises(ExpiredError):
        open_signed(raw, now_ms=NOW + 1000 + envelope.EXPIRY_GRACE_MS)  # expired
    open_signed(raw, now_ms=NOW - envelope.DEFAULT_MAX_SKEW_MS)
    with pytest.raises(ExpiredError):
        open_signed(raw, now_ms=NOW - envelope.DEFAULT_MAX_SKEW_MS - 1)  # issued in the future
    assert open_signed(raw, now_ms=NOW + 10**9, check_time=False).message == chunk()  # evidence


def test_expiry_grace_opens_no_replay_window():
    """The cache keeps a nonce as long as the grace lets the message be accepted."""
    cache = ReplayCache()
    raw = sign(chunk(), ALICE, now_ms=NOW, ttl_ms=1000)
    open_signed(raw, now_ms=NOW + 1000 + envelope.EXPIRY_GRACE_MS - 2, replay=cache)
    with pytest.raises(ReplayError):
        open_signed(raw, now_ms=NOW + 1000 + envelope.EXPIRY_GRACE_MS - 1, replay=cache)


@settings(max_examples=examples(3))
@given(record_strategy(messages.PoolHeartbeat))
def test_signers_give_a_type_at_least_its_minimum_lifetime(heartbeat):
    """A heartbeat sent every second used to live 4 s; a receiver a few seconds ahead then dropped it."""
    assert messages.PoolHeartbeat.MIN_TTL_MS >= 15_000
    with pytest.raises(SchemaError, match="ttl_ms"):
        sign(chunk(), ALICE, now_ms=NOW, ttl_ms=0)
    with pytest.raises(SchemaError, match="ttl_ms"):
        sign(heartbeat, ALICE, now_ms=NOW, ttl_ms=4_000)
    sign(heartbeat, ALICE, now_ms=NOW, ttl_ms=messages.PoolHeartbeat.MIN_TTL_MS)


def test_inference_requests_live_at_most_two_minutes():
    """Long-lived requests fill replay caches cheaply (see test_inference's flood test)."""
    assert 60_000 <= messages.InferenceRequest.MAX_TTL_MS <= 120_000
    with pytest.raises(SchemaError):
        sign(make_request(BOB), ALICE, now_ms=NOW, ttl_ms=10 * 60 * 1000)


def test_lifetime_over_the_types_bound_is_refused():
    hb_ttl = messages.PoolHeartbeat.MAX_TTL_MS
    with pytest.raises(SchemaError):
        sign(chunk(), ALICE, now_ms=NOW, ttl_ms=messages.ResponseChunk.MAX_TTL_MS + 1)
    forged = _forge(
        messages.ResponseChunk, _items(chunk(), expires=NOW + messages.ResponseChunk.MAX_TTL_MS + 1)
    )
    with pytest.raises(ExpiredError):
        open_signed(forged, now_ms=NOW, check_time=False)
    for expires in (NOW, NOW - 1):  # no lifetime at all
        with pytest.raises(ExpiredError):
            open_signed(_forge(messages.ResponseChunk, _items(chunk(), expires=expires)), now_ms=NOW)
    assert hb_ttl == 5 * 60 * 1000


def test_replay_is_refused():
    cache = ReplayCache()
    raw = sign(chunk(), ALICE, now_ms=NOW, ttl_ms=60_000, nonce=b"x" * 16)
    open_signed(raw, now_ms=NOW, replay=cache)
    with pytest.raises(ReplayError):
        open_signed(raw, now_ms=NOW + 1, replay=cache)
    # The same nonce from another signer is another message.
    open_signed(sign(chunk(), BOB, now_ms=NOW, nonce=b"x" * 16), now_ms=NOW, replay=cache)
    with pytest.raises(SchemaError):
        open_signed(raw, now_ms=NOW, replay=cache, check_time=False)


def test_invalid_messages_take_no_room_in_the_replay_cache():
    cache = ReplayCache()
    forged = _forge(messages.ResponseEnd, _items(chunk()))
    with pytest.raises(SignatureError):
        open_signed(forged, now_ms=NOW, replay=cache)
    assert len(cache) == 0


def _nonce(i: int) -> bytes:
    return i.to_bytes(16, "big")


def test_replay_cache_is_bounded_and_never_admits_a_replay():
    cache = ReplayCache(capacity=3)
    for i in range(3):
        cache.check_and_remember(b"k", _nonce(i), expires_at_ms=1000 + i, now_ms=0)
    # Full: a new message is refused as busy, and nothing remembered is dropped to make room.
    with pytest.raises(BusyError, match="full"):
        cache.check_and_remember(b"k", _nonce(9), expires_at_ms=2000, now_ms=0)
    with pytest.raises(ReplayError) as replayed:
        cache.check_and_remember(b"k", _nonce(0), expires_at_ms=1000, now_ms=0)
    assert not isinstance(replayed.value, BusyError)
    assert len(cache) == 3
    # Entries are kept until their expiry plus the grace, then make room.
    grace = envelope.EXPIRY_GRACE_MS
    with pytest.raises(BusyError):
        cache.check_and_remember(b"k", _nonce(9), expires_at_ms=9000, now_ms=1000 + grace - 1)
    cache.check_and_remember(b"k", _nonce(9), expires_at_ms=9000, now_ms=1000 + grace)
    cache.check_and_remember(b"k", _nonce(10), expires_at_ms=9000, now_ms=1002 + grace)
    assert len(cache) == 2
    assert cache.statistics() == {
        "entries": 2,
        "capacity": 3,
        "signers": 1,
        "per_signer": 1024,
        "refused_replays": 1,
        "refused_busy": 2,
    }


def test_one_signer_cannot_take_more_than_its_quota():
    """Before per-signer quotas, one key's flood of long-lived messages raised the cache's floor, and honest
    messages with shorter lives were then refused as "too old to judge"."""
    cache = ReplayCache(capacity=100, per_signer=10)
    for i in range(10):
        cache.check_and_remember(b"flooder", _nonce(i), expires_at_ms=600_000, now_ms=0)
    with pytest.raises(BusyError, match="this signer"):
        cache.check_and_remember(b"flooder", _nonce(10), expires_at_ms=600_000, now_ms=0)
    cache.check_and_remember(b"honest", _nonce(0), expires_at_ms=60_000, now_ms=0)
    assert cache.statistics()["signers"] == 2
    # The flooder's entries expire and its quota comes back.
    cache.check_and_remember(b"flooder", _nonce(10), expires_at_ms=1_200_000, now_ms=600_000 + 5_000)
    assert len(cache) == 1


def test_a_flood_from_fresh_keys_is_refused_as_busy_and_forgotten_after_it_ends():
    cache = ReplayCache(capacity=50, per_signer=2)
    for i in range(50):
        cache.check_and_remember(_nonce(i), _nonce(0), expires_at_ms=120_000, now_ms=0)
    with pytest.raises(BusyError):
        cache.check_and_remember(b"honest", _nonce(0), expires_at_ms=60_000, now_ms=1_000)
    # Once the flood's messages expire, honest ones are judged again: no floor outlives the flood.
    cache.check_and_remember(b"honest", _nonce(0), expires_at_ms=185_000, now_ms=125_000)
    with pytest.raises(ReplayError):
        cache.check_and_remember(b"honest", _nonce(0), expires_at_ms=185_000, now_ms=125_001)


def test_oversized_and_bomb_bodies():
    big = make_request(BOB, prompt="x" * 20_000)
    raw = sign(big, ALICE, now_ms=NOW)
    assert len(raw) < 1000  # compressed
    with pytest.raises(LimitError):
        open_signed(raw, now_ms=NOW, limits=codec.Limits(max_decompressed=10_000))
    plain = sign(big, ALICE, now_ms=NOW, compress=False)
    with pytest.raises(LimitError):
        open_signed(plain, now_ms=NOW, limits=codec.Limits(max_bytes=10_000))
    assert open_signed(raw, now_ms=NOW).message == big


def test_non_canonical_outer_encoding_is_refused():
    raw = sign(chunk(), ALICE, now_ms=NOW)
    _, signed_part, signature = codec.unpack(raw)
    # The same three values with the signature in a bin16 header instead of bin8.
    head = codec.pack([envelope.ENVELOPE_VERSION, signed_part])
    respelled = b"\x93" + head[1:] + b"\xc5\x00\x40" + signature
    assert codec.unpack(respelled) == codec.unpack(raw)
    with pytest.raises(DecodeError):
        open_signed(respelled, now_ms=NOW)


def test_expected_type_and_truncation():
    raw = sign(chunk(), ALICE, now_ms=NOW)
    with pytest.raises(SchemaError):
        open_signed(raw, messages.ResponseEnd, now_ms=NOW)
    for cut in (1, len(raw) // 2, len(raw) - 1):
        with pytest.raises(DecodeError):
            open_signed(raw[:cut], now_ms=NOW)
