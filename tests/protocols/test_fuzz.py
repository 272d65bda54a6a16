"""Random and mutated bytes into every decoder: the only exception allowed out is `ProtocolError`.

More examples: DOLPHIN_FUZZ_EXAMPLES=5000 pytest tests/protocols/test_fuzz.py
"""

import contextlib
import functools
import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec, e2e, envelope, eth, framing, keys, messages
from protocols.envelope import ReplayCache
from protocols.errors import ProtocolError
from protocols.inference import NodeExchange, verify_countersigned_receipt
from protocols.schema import decode_message, encode_message, message_types
from protocols.testing import encryption_keys, exchange_pair, identity
from tests.examples import examples
from tests.protocols.strategies import msgpack_values, record_strategy

pytestmark = pytest.mark.unit

EXAMPLES = examples(int(os.environ.get("DOLPHIN_FUZZ_EXAMPLES", "150")))
NOW = 1_700_000_000_000
STREAM_KEY = b"s" * 32
STREAM_HEADER = e2e.StreamSealer(STREAM_KEY).header
ALL_MESSAGES = sorted(message_types().values(), key=lambda cls: cls.TYPE)


def _receive_after_header(data):
    client, node = exchange_pair()
    client.receive(node.header())
    client.receive(data)


def _frames(data):
    decoder = framing.FrameDecoder(max_frame=1000)
    decoder.feed(data)
    decoder.frames()


DECODERS = {
    "unpack": codec.unpack,
    "decompress": lambda d: codec.decompress(d, 1 << 16),
    "decode_message": decode_message,
    "open_signed": lambda d: envelope.open_signed(d, now_ms=NOW, replay=ReplayCache()),
    "open_signed_evidence": lambda d: envelope.open_signed(d, check_time=False),
    "open_sealed": lambda d: e2e.open_sealed(d, encryption_keys(2)),
    "stream_open": lambda d: e2e.StreamOpener(STREAM_KEY, STREAM_HEADER).open(d),
    "stream_header": lambda d: e2e.StreamOpener(STREAM_KEY, d),
    "countersigned_receipt": verify_countersigned_receipt,
    "node_accept": lambda d: NodeExchange.accept(
        d, identity=identity(2), encryption_keys=encryption_keys(2), now_ms=NOW, replay=ReplayCache()
    ),
    "client_receive": _receive_after_header,
    "frames": _frames,
    "uvarint": framing.decode_uvarint,
    "peer_id_text": lambda d: keys.peer_id_from_text(d.decode("latin-1")),
    "peer_id_key": keys.public_key_from_peer_id,
    "eth_recover": lambda d: eth.recover_digest(d[:32].ljust(32, b"\0"), d[-65:]),
}


def only_protocol_errors(decoder, data):
    with contextlib.suppress(ProtocolError):
        decoder(data)


@functools.cache
def corpus():
    """Valid inputs of every kind, to mutate."""
    client, node = exchange_pair()
    frames = [node.header(), node.chunk("hello", (1, 2, 3)), node.chunk("", ())]
    frames.append(
        node.end("stop", tokens_in=3, started_at_ms=NOW, first_token_ms=1, duration_ms=2, now_ms=NOW)
    )
    for frame in frames:
        client.receive(frame)
    chunk = messages.ResponseChunk(seq=0, text="hi", token_ids=(1,))
    big = messages.ResponseChunk(seq=0, text="x" * 6000)
    return (
        client.sealed_request,
        client.request_envelope,
        client.countersigned_receipt(),
        node.receipt_envelope,
        *frames,
        encode_message(chunk),
        envelope.sign(chunk, identity(1), now_ms=NOW),
        envelope.sign(big, identity(1), now_ms=NOW),  # zstd body
        codec.compress(b"payload" * 10),
        framing.encode_frame(b"abc") + framing.encode_frame(b""),
        identity(1).peer_id,
        keys.peer_id_to_text(identity(1).peer_id).encode(),
        eth.EthAccount(b"\1" * 32).sign_digest(b"\2" * 32),
    )


def any_message():
    return st.one_of([record_strategy(cls) for cls in ALL_MESSAGES])


valid_inputs = st.one_of(
    st.sampled_from(range(1000)).map(lambda i: corpus()[i % len(corpus())]),
    any_message().map(encode_message),
    any_message().map(lambda m: envelope.sign(m, identity(1), now_ms=NOW, ttl_ms=max(1000, m.MIN_TTL_MS))),
)


@st.composite
def mutated(draw, seeds):
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "duplicate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[position] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xC4, 0xCA, 0xD4, 0xDC, 0xFF])
            )
        elif op == "truncate":
            del data[position:]
        elif op == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif op == "duplicate":
            data[position:position] = data[position : position + draw(st.integers(1, 16))]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=EXAMPLES)
@given(data=st.binary(max_size=600))
def test_random_bytes(name, data):
    only_protocol_errors(DECODERS[name], data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=EXAMPLES)
@given(data=mutated(valid_inputs))
def test_mutated_valid_inputs(name, data):
    only_protocol_errors(DECODERS[name], data)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.TYPE)
@settings(max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_structured_garbage_in_a_real_message_type(cls, data):
    """Well-formed msgpack of any shape under a real type: reaches schema checks, still only ProtocolError."""
    names = st.sampled_from([*cls.__specs__, "extra"])
    body = data.draw(st.dictionaries(names | st.text(max_size=4), msgpack_values, max_size=8))
    raw = msgpack.packb([cls.TYPE, cls.VERSION, body], use_bin_type=True)
    only_protocol_errors(decode_message, raw)
    # The same garbage inside a validly signed envelope, so it gets past the signature check.
    signed_part = msgpack.packb(
        [cls.TYPE, cls.VERSION, identity(1).public_key, b"n" * 16, NOW, NOW + 1000, body], use_bin_type=True
    )
    signature = identity(1).sign(envelope._signing_input(envelope.domain_of(cls), signed_part))
    only_protocol_errors(
        lambda d: envelope.open_signed(d, now_ms=NOW),
        codec.pack([envelope.ENVELOPE_VERSION, signed_part, signature]),
    )


@settings(max_examples=EXAMPLES)
@given(msgpack_values)
def test_any_msgpack_value(value):
    raw = msgpack.packb(value, use_bin_type=True)
    for decoder in DECODERS.values():
        only_protocol_errors(decoder, raw)
