"""Every message type: round trips, and the schema's rejections (missing, wrong-typed, unknown fields)."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec, messages
from protocols.errors import ProtocolError, SchemaError
from protocols.schema import decode_message, encode_message, message_types
from protocols.testing import TEST_DOMAIN, TEST_MODEL, eth_account
from tests.examples import examples
from tests.protocols.strategies import record_strategy

pytestmark = pytest.mark.unit

ALL_MESSAGES = sorted(message_types().values(), key=lambda cls: cls.TYPE)
CLOSED = [cls for cls in ALL_MESSAGES if not cls.__open__]
OPEN = [cls for cls in ALL_MESSAGES if cls.__open__]


def test_every_message_named_in_the_issue_exists():
    names = {cls.TYPE for cls in ALL_MESSAGES}
    assert {
        "pool.heartbeat",
        "pool.attestation",
        "inference.request",
        "inference.chunk",
        "inference.end",
        "inference.receipt",
        "validator.evidence",
        "validator.strike",
        "validator.ban",
        "settlement.proposal",
        "settlement.signature",
    } <= names
    assert {cls.TYPE for cls in OPEN} == {"pool.heartbeat", "pool.attestation"}


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
@settings(max_examples=examples(40), deadline=None)
@given(data=st.data())
def test_round_trip(cls, data):
    msg = data.draw(record_strategy(cls))
    encoded = encode_message(msg)
    assert decode_message(encoded, cls) == msg
    assert encode_message(decode_message(encoded)) == encoded  # canonical: one encoding per message


def _wire(msg):
    return codec.unpack(encode_message(msg))


def _encode_raw(type_name, version, body):
    return codec.pack([type_name, version, body])


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
@settings(max_examples=examples(10), deadline=None)
@given(data=st.data())
def test_missing_required_field_is_a_schema_error(cls, data):
    msg = data.draw(record_strategy(cls))
    _, _, body = _wire(msg)
    required = [name for name, spec in cls.__specs__.items() if not spec.optional and name in body]
    name = data.draw(st.sampled_from(required))
    body = {k: v for k, v in body.items() if k != name}
    with pytest.raises(SchemaError, match=f"missing field '{name}'"):
        decode_message(_encode_raw(cls.TYPE, cls.VERSION, body))


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
@settings(max_examples=examples(10), deadline=None)
@given(data=st.data())
def test_wrong_type_is_a_schema_error(cls, data):
    msg = data.draw(record_strategy(cls))
    _, _, body = _wire(msg)
    name = data.draw(st.sampled_from(sorted(body)))
    wrong = data.draw(
        st.sampled_from([None, True, -1, 1 << 63, "text", b"\x01" * 33, (), {"x": 1}]).filter(
            lambda w: (
                type(w) is not type(body[name]) and not (isinstance(w, int) and isinstance(body[name], int))
            )
        )
    )
    body = {**body, name: wrong}
    with pytest.raises(SchemaError):
        decode_message(_encode_raw(cls.TYPE, cls.VERSION, body))


@pytest.mark.parametrize("cls", CLOSED, ids=lambda c: c.TYPE)
@settings(max_examples=examples(5), deadline=None)
@given(data=st.data())
def test_closed_messages_refuse_unknown_fields(cls, data):
    msg = data.draw(record_strategy(cls))
    _, _, body = _wire(msg)
    with pytest.raises(SchemaError, match="unknown field"):
        decode_message(_encode_raw(cls.TYPE, cls.VERSION, {**body, "surprise": 1}))


@pytest.mark.parametrize("cls", OPEN, ids=lambda c: c.TYPE)
@settings(max_examples=examples(5), deadline=None)
@given(data=st.data())
def test_open_messages_tolerate_unknown_fields(cls, data):
    msg = data.draw(record_strategy(cls))
    _, _, body = _wire(msg)
    hardware = {**body["hardware"], "npu_count": 2}  # nested open record too
    decoded = decode_message(_encode_raw(cls.TYPE, cls.VERSION, {**body, "hardware": hardware, "zone": "eu"}))
    assert decoded == msg


def test_unknown_type_or_version_and_unexpected_type():
    chunk = messages.ResponseChunk(seq=0, text="hi")
    _, _, body = _wire(chunk)
    for type_name, version in [
        ("inference.chunk", 2),
        ("inference.nope", 1),
        (1, 1),
        ("inference.chunk", True),
    ]:
        with pytest.raises(SchemaError):
            decode_message(_encode_raw(type_name, version, body))
    with pytest.raises(SchemaError, match="expected"):
        decode_message(encode_message(chunk), messages.ResponseEnd)
    for bad in ([chunk.TYPE, chunk.VERSION], {"t": 1}, [chunk.TYPE, chunk.VERSION, body, 1]):
        with pytest.raises(SchemaError):
            decode_message(codec.pack(bad))


def test_optional_fields_are_absent_not_nil():
    end = messages.ResponseEnd(seq=3, finish_reason="stop")
    _, _, body = _wire(end)
    assert "error" not in body and "receipt" not in body
    with pytest.raises(SchemaError):
        decode_message(_encode_raw(end.TYPE, end.VERSION, {**body, "error": None}))


def test_construction_validates():
    with pytest.raises(SchemaError):
        messages.ResponseChunk(seq=0, text="x", token_ids=(1, 2), logprobs_micro=(5,))
    with pytest.raises(SchemaError):
        messages.ResponseChunk(seq=True, text="x")  # bool is not an int here
    with pytest.raises(SchemaError):
        messages.ChatMessage(role="user", content="\ud800")  # lone surrogate: not UTF-8
    with pytest.raises(SchemaError):
        messages.ResponseEnd(seq=0, finish_reason="exploded")
    chunk = messages.ResponseChunk(seq=0, text="x", token_ids=[1, 2])
    assert chunk.token_ids == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        chunk.seq = 1


@settings(max_examples=examples(10), deadline=None)
@given(record_strategy(messages.StrikeReport).filter(lambda s: s.evidence))
def test_strike_evidence_must_match_its_hash(strike):
    with pytest.raises(SchemaError):
        dataclasses.replace(strike, evidence=(*strike.evidence, b"forged"))


@settings(max_examples=examples(10), deadline=None)
@given(record_strategy(messages.BanNotice))
def test_ban_notice_strikes_must_be_about_the_banned_node(ban):
    other = dataclasses.replace(
        ban.strikes[0], node_key=bytes(32) if ban.node_key != bytes(32) else b"\1" * 32
    )
    with pytest.raises(SchemaError):
        dataclasses.replace(ban, strikes=(other,))


@settings(max_examples=examples(10), deadline=None)
@given(record_strategy(messages.SettlementProposal))
def test_uint256_travels_as_32_bytes(proposal):
    _, _, body = _wire(proposal)
    assert body["total_rewards"] == proposal.total_rewards.to_bytes(32, "big")
    with pytest.raises(SchemaError):
        decode_message(_encode_raw(proposal.TYPE, 1, {**body, "total_rewards": 5}))
    with pytest.raises(SchemaError):
        decode_message(_encode_raw(proposal.TYPE, 1, {**body, "total_rewards": b"\1" * 31}))


def test_every_error_is_a_protocol_error():
    assert issubclass(SchemaError, ProtocolError)


def test_node_standing_is_signed_by_the_validator_it_names():
    validator, other = eth_account(1), eth_account(2)
    fields = dict(
        validator=validator.address,
        node_key=b"\x03" * 32,
        model=TEST_MODEL,
        epoch=4,
        checks=10,
        failures=1,
        suspicion_micro=20_000,
        status="suspect",
    )
    standing = messages.eth_sign(messages.NodeStanding, validator, TEST_DOMAIN, **fields)
    decoded = decode_message(encode_message(standing), messages.NodeStanding)
    assert messages.eth_signer(decoded, TEST_DOMAIN) == validator.address
    forged = dataclasses.replace(decoded, validator=other.address)
    with pytest.raises(ProtocolError):
        messages.eth_signer(forged, TEST_DOMAIN)
    with pytest.raises(SchemaError, match="failures cannot exceed checks"):
        dataclasses.replace(decoded, failures=11)
