"""The inference exchange end to end in memory, and every way its checks can fail."""

import dataclasses
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import codec, envelope, messages
from protocols.envelope import ReplayCache
from protocols.errors import (
    BusyError,
    DecryptError,
    ExpiredError,
    ProtocolError,
    ReplayError,
    SchemaError,
    SignatureError,
    StreamError,
)
from protocols.inference import (
    MESSAGE_TEMPLATE_TOKENS,
    PROMPT_TEMPLATE_TOKENS,
    ClientExchange,
    NodeExchange,
    TokenBatcher,
    countersign_receipt,
    output_hash,
    prompt_token_bound,
    verify_countersigned_receipt,
)
from protocols.messages import InferenceRequest
from protocols.schema import decode_message, encode_message
from protocols.testing import (
    TEST_DOMAIN,
    TEST_MODEL,
    encryption_keys,
    eth_account,
    exchange_pair,
    identity,
    make_request,
)
from tests.examples import examples

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000


def serve(node, pieces, finish="stop"):
    frames = [node.header()]
    frames += [node.chunk(text, tuple(ids)) for text, ids in pieces]
    frames.append(
        node.end(finish, tokens_in=7, started_at_ms=NOW, first_token_ms=12, duration_ms=80, now_ms=NOW + 80)
    )
    return frames


@settings(max_examples=examples(30))
@given(
    st.lists(st.tuples(st.text(max_size=20), st.lists(st.integers(0, 2**32 - 1), max_size=4)), max_size=6),
    st.text(min_size=1, max_size=200),
)
def test_full_exchange(pieces, prompt):
    client, node = exchange_pair(prompt=prompt)
    assert node.request == client.request
    assert node.client_key == identity(1).public_key
    events = [client.receive(f) for f in serve(node, pieces)]
    assert events[0] is None
    assert [(e.text, list(e.token_ids)) for e in events[1:-1]] == [(t, ids) for t, ids in pieces]
    end = events[-1]
    assert isinstance(end, messages.ResponseEnd) and end.finish_reason == "stop"
    client.close()

    receipt = client.receipt.message
    assert receipt.tokens_out == sum(len(ids) for _, ids in pieces)
    assert receipt.request_hash == client.request_hash
    assert client.receipt.signer == identity(2).public_key

    verified = node.accept_countersigned(client.countersigned_receipt())
    assert verified.receipt == receipt
    assert (verified.node_key, verified.client_key) == (identity(2).public_key, identity(1).public_key)
    assert verify_countersigned_receipt(verified.countersigned) == verified


def test_the_node_acknowledges_the_countersigned_receipt_it_stored():
    client, node = exchange_pair()
    for frame in serve(node, [("hi", (1,))]):
        client.receive(frame)
    countersigned = client.countersigned_receipt()
    node.accept_countersigned(countersigned)
    frame = node.acknowledge(stored=True)
    ack = client.receive_ack(frame)
    assert ack.stored and ack.error is None
    assert client.state == node.state == "acknowledged"
    with pytest.raises(StreamError):
        client.receive_ack(frame)
    with pytest.raises(SchemaError):
        node.acknowledge(stored=True)


def test_an_acknowledgement_of_another_receipt_or_before_countersigning_is_refused():
    client, node = exchange_pair()
    for frame in serve(node, [("hi", (1,))]):
        client.receive(frame)
    with pytest.raises(StreamError, match="no countersigned receipt"):
        client.receive_ack(b"anything")
    with pytest.raises(SchemaError, match="nothing to acknowledge"):
        node.acknowledge(stored=True)
    client.countersigned_receipt()
    other_client, other_node = exchange_pair()
    for frame in serve(other_node, [("x", (2,))]):
        other_client.receive(frame)
    other_node.accept_countersigned(other_client.countersigned_receipt())
    with pytest.raises(SchemaError, match="another receipt"):
        client.receive_ack(other_node.acknowledge(stored=True))


def test_a_receipt_not_stored_is_acknowledged_with_the_reason():
    client, node = exchange_pair()
    for frame in serve(node, [("hi", (1,))]):
        client.receive(frame)
    forged = countersign_receipt(client.receipt.raw, identity(9))
    with pytest.raises(ProtocolError):
        node.accept_countersigned(forged)
    with pytest.raises(SchemaError, match="nothing to acknowledge"):
        node.acknowledge(stored=True)  # "stored" needs a verified receipt
    refused = decode_message(
        node.acknowledge(stored=False, error="bad countersignature"), messages.ReceiptAck
    )
    assert (refused.stored, refused.error) == (False, "bad countersignature")

    client, node = exchange_pair()
    for frame in serve(node, [("hi", (1,))]):
        client.receive(frame)
    node.accept_countersigned(client.countersigned_receipt())
    ack = client.receive_ack(node.acknowledge(stored=False, error="the ledger is unavailable"))
    assert not ack.stored and ack.error == "the ledger is unavailable"
    with pytest.raises(SchemaError):
        messages.ReceiptAck(receipt_digest=b"\0" * 32, stored=True, error="contradiction")


def test_a_refused_request_gets_an_error_only_its_sender_can_read():
    client, _ = exchange_pair()
    frames = NodeExchange.refusal(
        client.sealed_request, encryption_keys=encryption_keys(2), reason="request expired 5 s ago"
    )
    assert client.receive(frames[0]) is None
    end = client.receive(frames[1])
    assert end.finish_reason == "error" and end.error == "request expired 5 s ago"
    assert end.receipt is None and client.receipt is None
    other, _ = exchange_pair(client_n=3)
    other.receive(frames[0])
    with pytest.raises(StreamError):
        other.receive(frames[1])
    with pytest.raises(DecryptError):
        NodeExchange.refusal(client.sealed_request, encryption_keys=encryption_keys(5), reason="x")


def test_relay_sees_no_plaintext():
    client, node = exchange_pair(prompt="my secret prompt")
    frames = serve(node, [("a secret answer", (1, 2))])
    for blob in [client.sealed_request, *frames]:
        assert b"secret" not in blob


def test_request_for_another_node_is_refused():
    client_id, node_id, other_id = identity(1), identity(2), identity(3)
    node_keys = encryption_keys(2)
    request = make_request(other_id)  # addressed to node 3, sealed to node 2's key
    client = ClientExchange(request, identity=client_id, node_encryption_key=node_keys.public_key, now_ms=NOW)
    with pytest.raises(SchemaError, match="another node"):
        NodeExchange.accept(client.sealed_request, identity=node_id, encryption_keys=node_keys, now_ms=NOW)
    with pytest.raises(DecryptError):
        NodeExchange.accept(client.sealed_request, identity=other_id, encryption_keys=encryption_keys(3))


def test_replayed_and_expired_requests_are_refused():
    client, _ = exchange_pair()
    cache = ReplayCache()
    accept = dict(identity=identity(2), encryption_keys=encryption_keys(2), replay=cache)
    NodeExchange.accept(client.sealed_request, now_ms=NOW, **accept)
    with pytest.raises(ReplayError):
        NodeExchange.accept(client.sealed_request, now_ms=NOW + 5, **accept)
    with pytest.raises(ExpiredError):
        NodeExchange.accept(client.sealed_request, now_ms=NOW + 60_000 + envelope.EXPIRY_GRACE_MS, **accept)


def _sealed_request(client_id, node_id=None, ttl_ms=60_000, **fields):
    request = make_request(node_id or identity(2), request_id=os.urandom(16), **fields)
    client = ClientExchange(
        request,
        identity=client_id,
        node_encryption_key=encryption_keys(2).public_key,
        now_ms=NOW,
        ttl_ms=ttl_ms,
    )
    return client.sealed_request


def test_refused_requests_take_no_room_in_the_replay_cache():
    """The nonce is remembered only after every check: before, a request for another node (or with a bad
    credit authorisation) was refused but its nonce still took a place in the cache."""
    cache = ReplayCache()
    accept = dict(identity=identity(2), encryption_keys=encryption_keys(2), now_ms=NOW, replay=cache)
    with pytest.raises(SchemaError, match="another node"):
        NodeExchange.accept(_sealed_request(identity(1), identity(3)), **accept)
    wrong_key_credit = _credit(eth_account(1), identity(5).public_key)
    with pytest.raises(SchemaError, match="session key"):
        NodeExchange.accept(
            _sealed_request(identity(1), credit=wrong_key_credit), credit_domain=TEST_DOMAIN, **accept
        )
    assert len(cache) == 0
    NodeExchange.accept(_sealed_request(identity(1)), **accept)
    assert len(cache) == 1


def test_a_flood_of_long_lived_requests_does_not_lock_out_honest_clients():
    """Before: fresh keys sending 10-minute requests filled the cache, its floor rose to their expiry, and
    honest 60-second requests were refused as "too old to judge" for ten minutes after the flood."""
    cache = ReplayCache(capacity=20)
    accept = dict(identity=identity(2), encryption_keys=encryption_keys(2), replay=cache)
    longest = InferenceRequest.MAX_TTL_MS
    busy = 0
    for n in range(100, 130):  # a fresh key per request
        try:
            NodeExchange.accept(_sealed_request(identity(n), ttl_ms=longest), now_ms=NOW, **accept)
        except BusyError:
            busy += 1
    assert busy == 10 and len(cache) == 20
    later = NOW + longest + envelope.EXPIRY_GRACE_MS
    honest = ClientExchange(
        make_request(identity(2), prompt="honest"),
        identity=identity(1),
        node_encryption_key=encryption_keys(2).public_key,
        now_ms=later,
    )
    NodeExchange.accept(honest.sealed_request, now_ms=later, **accept)


def test_truncated_answer_is_reported():
    client, node = exchange_pair()
    frames = serve(node, [("a", (1,)), ("b", (2,))])
    for frame in frames[:-1]:
        client.receive(frame)
    with pytest.raises(StreamError, match="truncated"):
        client.close()
    assert client.state == "failed"


def test_reordered_or_dropped_chunk_fails_the_exchange():
    client, node = exchange_pair()
    frames = serve(node, [("a", (1,)), ("b", (2,))])
    client.receive(frames[0])
    with pytest.raises(StreamError):
        client.receive(frames[2])
    with pytest.raises(StreamError, match="failed"):
        client.receive(frames[1])


def test_flipped_bit_in_any_frame_fails_the_exchange():
    for index in range(1, 4):
        client, node = exchange_pair()
        frames = serve(node, [("a", (1,)), ("b", (2,))])
        for frame in frames[:index]:
            client.receive(frame)
        flipped = bytearray(frames[index])
        flipped[len(flipped) // 2] ^= 0x10
        with pytest.raises(StreamError):
            client.receive(bytes(flipped))


def test_node_cannot_stream_after_end():
    _, node = exchange_pair()
    serve(node, [])
    with pytest.raises(StreamError):
        node.chunk("late", (1,))


def _lying_node_end(node, **receipt_overrides):
    """A node that signs a receipt other than the honest one."""
    honest = messages.Receipt(
        request_id=node.request.request_id,
        request_hash=node.request_hash,
        request_bytes=len(node.signed_request.raw),
        model=node.request.model,
        client_key=node.client_key,
        max_tokens=node.request.max_tokens,
        tokens_in=7,
        tokens_out=node.tokens_out,
        output_hash=node._output.digest(),
        started_at_ms=NOW,
        first_token_ms=1,
        duration_ms=2,
        finish_reason="stop",
    )
    receipt = dataclasses.replace(honest, **receipt_overrides)
    raw = envelope.sign(receipt, node.identity, now_ms=NOW)
    end = messages.ResponseEnd(seq=node._seq, finish_reason="stop", receipt=raw)
    return node._sealer.seal(encode_message(end), final=True)


@pytest.mark.parametrize(
    "override",
    [
        {"tokens_out": 3},
        {"request_hash": b"\0" * 32},
        {"request_id": b"\0" * 16},
        {"model": b"\1" * 32},
        {"client_key": b"\2" * 32},
        {"output_hash": b"\3" * 32},
        {"request_bytes": 4096},
        {"max_tokens": 1 << 20},
    ],
    ids=lambda o: next(iter(o)),
)
def test_client_refuses_a_receipt_that_does_not_match(override):
    client, node = exchange_pair()
    client.receive(node.header())
    client.receive(node.chunk("a", (1, 2)))
    with pytest.raises(SchemaError, match="receipt does not match"):
        client.receive(_lying_node_end(node, **override))
    with pytest.raises(SchemaError):
        client.countersigned_receipt()


def test_the_receipt_commits_to_the_chunks_the_client_received():
    client, node = exchange_pair()
    for frame in serve(node, [("Hel", (1, 2)), ("lo", (3,))]):
        client.receive(frame)
    receipt = client.receipt.message
    assert receipt.output_hash == output_hash(client.chunks)
    assert [decode_message(chunk).text for chunk in client.chunks] == ["Hel", "lo"]
    # Same tokens, other chunk boundaries: another answer as far as the commitment goes.
    merged = messages.ResponseChunk(seq=0, text="Hello", token_ids=(1, 2, 3))
    assert output_hash([encode_message(merged)]) != receipt.output_hash


def test_client_refuses_a_receipt_signed_by_another_node():
    client, node = exchange_pair()
    client.receive(node.header())
    node.identity = identity(9)  # an impostor holding the stream key but not the addressed node's key
    with pytest.raises(SchemaError, match="node key"):
        client.receive(_lying_node_end(node))


def test_countersignature_checks():
    client, node = exchange_pair()
    for frame in serve(node, [("a", (1,))]):
        client.receive(frame)
    good = client.countersigned_receipt()
    # Signed by someone other than the client the receipt names.
    forged = countersign_receipt(client.receipt.raw, identity(7))
    with pytest.raises(SignatureError):
        verify_countersigned_receipt(forged)
    # The receipt itself altered under the countersignature.
    outer = codec.unpack(good)
    body = dict(outer[2])
    body["receipt"] = body["receipt"][:-1] + bytes([body["receipt"][-1] ^ 1])
    with pytest.raises(SignatureError):
        verify_countersigned_receipt(codec.pack([outer[0], outer[1], body]))
    # Another exchange's receipt offered to this node.
    other_client, other_node = exchange_pair(prompt="other")
    for frame in serve(other_node, []):
        other_client.receive(frame)
    with pytest.raises(SchemaError):
        node.accept_countersigned(other_client.countersigned_receipt())
    assert node.accept_countersigned(good).receipt == client.receipt.message


def _credit(account, session_key, **overrides):
    fields = dict(
        client=account.address,
        session_key=session_key,
        model=TEST_MODEL,
        max_credits=10**21,
        nonce=1,
        expiry=NOW // 1000 + 3600,
    )
    fields.update(overrides)
    return messages.eth_sign(messages.CreditAuthorisation, account, TEST_DOMAIN, **fields)


def _accept_with_credit(credit, *, node_now=NOW, credit_domain=TEST_DOMAIN):
    client_id = identity(1)
    request = make_request(identity(2), credit=credit)
    client = ClientExchange(
        request, identity=client_id, node_encryption_key=encryption_keys(2).public_key, now_ms=NOW
    )
    return NodeExchange.accept(
        client.sealed_request,
        identity=identity(2),
        encryption_keys=encryption_keys(2),
        now_ms=node_now,
        credit_domain=credit_domain,
    )


def test_the_receipt_names_a_paying_client_only_when_its_authorisation_was_verified():
    node = _accept_with_credit(_credit(eth_account(1), identity(1).public_key), credit_domain=None)
    assert node.credit_client is None
    node.header()
    node.end("stop", tokens_in=1, started_at_ms=NOW, first_token_ms=1, duration_ms=1, now_ms=NOW)
    assert envelope.open_signed(node.receipt_envelope, check_time=False).message.client is None


def test_credit_authorisation_is_checked_and_lands_in_the_receipt():
    wallet = eth_account(1)
    node = _accept_with_credit(_credit(wallet, identity(1).public_key))
    assert node.credit_client == wallet.address
    node.header()
    node.end("stop", tokens_in=1, started_at_ms=NOW, first_token_ms=1, duration_ms=1, now_ms=NOW)
    receipt = envelope.open_signed(node.receipt_envelope, check_time=False).message
    assert receipt.client == wallet.address
    assert receipt.credit == node.request.credit  # carried whole: settlement re-checks it

    with pytest.raises(SchemaError, match="session key"):
        _accept_with_credit(_credit(wallet, identity(5).public_key))
    with pytest.raises(SchemaError, match="expired"):
        _accept_with_credit(_credit(wallet, identity(1).public_key, expiry=NOW // 1000 - 1))
    # Expiry is judged by the node's clock: a request the client dates before the expiry does not help.
    with pytest.raises(SchemaError, match="expired"):
        _accept_with_credit(_credit(wallet, identity(1).public_key, expiry=NOW // 1000), node_now=NOW + 2000)
    forged = dataclasses.replace(_credit(wallet, identity(1).public_key), max_credits=10**30)
    with pytest.raises(SignatureError):
        _accept_with_credit(forged)


def test_garbage_frames_only_raise_protocol_errors():
    client, node = exchange_pair()
    with pytest.raises(ProtocolError):
        client.receive(b"short header")
    client, node = exchange_pair()
    client.receive(node.header())
    with pytest.raises(ProtocolError):
        client.receive(b"\0" * 40)


def test_every_single_token_chunk_has_the_same_size():
    """Before: 0–3 character tokens sealed to 81 bytes and 4–34 character ones to 113, so the path learned
    short/long for every token."""
    _, node = exchange_pair()
    node.header()
    sizes = {len(node.chunk("x" * length, (2**32 - 1,), (-(2**63),))) for length in range(0, 120)}
    sizes |= {len(node.chunk("\N{DOLPHIN}" * length, (7,))) for length in range(0, 30)}
    assert sizes == {256}


def _batched_answer(batcher, pieces, *, started=NOW, step_ms=20):
    """Feed (text, ids) pieces one `step_ms` apart; returns [(time sent, frame)]."""
    sent = []
    for i, (text, ids) in enumerate(pieces):
        now = started + i * step_ms
        if (frame := batcher.poll(now)) is not None:
            sent.append((now, frame))
        if (frame := batcher.add(text, ids, now_ms=now)) is not None:
            sent.append((now, frame))
    if (frame := batcher.flush()) is not None:
        sent.append((started + len(pieces) * step_ms, frame))
    return sent


def test_batching_sends_the_first_token_at_once_then_one_chunk_per_interval():
    client, node = exchange_pair()
    client.receive(node.header())
    batcher = TokenBatcher(node, interval_ms=50)
    pieces = [(f" t{i}", (i,)) for i in range(20)]
    sent = _batched_answer(batcher, pieces, step_ms=20)
    assert sent[0][0] == NOW  # the first token costs no waiting
    chunks = [client.receive(frame, now_ms=at) for at, frame in sent]
    assert [len(c.token_ids) for c in chunks] == [1, 2, 3, 3, 3, 3, 3, 2]
    times = [at for at, _ in sent[:-1]]  # the last one is the flush before the end
    assert all(b - a >= 50 for a, b in itertools.pairwise(times))
    assert "".join(c.text for c in chunks) == "".join(text for text, _ in pieces)
    end = node.end("stop", tokens_in=3, started_at_ms=NOW, first_token_ms=0, duration_ms=400)
    client.receive(end, now_ms=NOW + 401)
    assert client.receipt.message.tokens_out == 20


def test_batcher_deadline_poll_and_limits():
    _, node = exchange_pair()
    batcher = TokenBatcher(node, interval_ms=50)
    assert batcher.deadline_ms is None and batcher.flush() is None
    assert batcher.add("a", (1,), (-5,), now_ms=NOW) is not None
    assert batcher.add("b", (2,), (-6,), now_ms=NOW + 10) is None
    assert (batcher.held_tokens, batcher.deadline_ms) == (1, NOW + 50)
    assert batcher.poll(NOW + 49) is None
    assert batcher.poll(NOW + 50) is not None and batcher.held_tokens == 0
    # A piece that would overflow a chunk sends the held batch first and waits for the next one.
    big = tuple(range(messages.MAX_TOKENS_PER_CHUNK))
    assert batcher.add("c", (3,), now_ms=NOW + 60) is None
    assert batcher.add("d" * 10, big, now_ms=NOW + 61) is not None
    assert batcher.held_tokens == len(big)
    with pytest.raises(SchemaError):
        TokenBatcher(node, interval_ms=-1)


def _answer_then_lie(**timing):
    """A client that saw: request at NOW, first token at NOW + 100, end at NOW + 1000; and a node whose
    receipt claims `timing` (started_at_ms / first_token_ms / duration_ms) instead of the truth."""
    client, node = exchange_pair()
    client.receive(node.header(), now_ms=NOW + 20)
    client.receive(node.chunk("a", (1,)), now_ms=NOW + 100)
    honest = dict(started_at_ms=NOW + 10, first_token_ms=80, duration_ms=950)
    fields = dict(honest, **timing)
    end = node.end("stop", tokens_in=7, now_ms=NOW + 960, **fields)
    return client, lambda: client.receive(end, now_ms=NOW + 1000)


def test_receipt_times_that_fit_what_the_client_saw_are_countersigned():
    tolerance = 5_000  # TIMING_TOLERANCE_MS: clocks a few seconds apart are normal
    for timing in ({}, {"started_at_ms": NOW - tolerance}, {"duration_ms": 950 + tolerance}):
        client, receive_end = _answer_then_lie(**timing)
        receive_end()
        assert client.countersigned_receipt()


@pytest.mark.parametrize(
    "timing, complaint",
    [
        ({"started_at_ms": NOW - 6_000}, "started before the request was signed"),
        ({"duration_ms": 7_000, "first_token_ms": 80}, "finished after the end arrived"),
        ({"first_token_ms": 6_000, "duration_ms": 6_000}, "first token after it arrived"),
        ({"first_token_ms": 951}, "first token after the end"),
    ],
)
def test_client_refuses_receipt_times_it_did_not_see(timing, complaint):
    """Before, any times were countersigned: a node could claim it was slower (to pass as the advertised
    model) or started earlier than the request even existed."""
    client, receive_end = _answer_then_lie(**timing)
    with pytest.raises(SchemaError, match=complaint):
        receive_end()
    with pytest.raises(SchemaError):
        client.countersigned_receipt()


# ---- #13 item 7: counts and payers the request cannot explain are never countersigned ----


def test_a_node_that_streams_more_tokens_than_asked_for_fails_the_exchange():
    """The review's receipt claimed tokens_out=40960 for max_tokens=16: the stream itself stops there."""
    client, node = exchange_pair(max_tokens=3)
    client.receive(node.header())
    client.receive(node.chunk("ab", (1, 2)))
    with pytest.raises(StreamError, match="more than the 3 tokens"):
        client.receive(node.chunk("cd", (3, 4)))
    with pytest.raises(StreamError):
        client.receive(node.chunk("e", (5,)))


def test_a_receipt_counting_more_output_than_max_tokens_is_refused():
    client, node = exchange_pair(max_tokens=2)
    client.receive(node.header())
    client.receive(node.chunk("ab", (1, 2)))
    with pytest.raises(SchemaError, match="max_tokens"):  # no such receipt can even be signed
        client.receive(_lying_node_end(node, tokens_out=40960))


def test_a_receipt_counting_more_prompt_than_the_prompt_can_hold_is_refused():
    prompt = "Hello, dolphin."
    bound = prompt_token_bound((messages.ChatMessage(role="user", content=prompt),))
    assert bound == PROMPT_TEMPLATE_TOKENS + len(prompt) + len("user") + MESSAGE_TEMPLATE_TOKENS
    with pytest.raises(SchemaError, match="length in bytes"):  # past the request's size: never signed
        _lying_node_end(exchange_pair(prompt=prompt)[1], tokens_in=4294967295)
    for claimed, fits in ((bound, True), (bound + 1, False)):
        client, node = exchange_pair(prompt=prompt)
        client.receive(node.header())
        end = _lying_node_end(node, tokens_in=claimed)
        if fits:
            client.receive(end)
            assert client.countersigned_receipt()
        else:
            with pytest.raises(SchemaError, match="tokens in"):
                client.receive(end)
    # Multi-byte text counts in bytes: a token of a byte-level tokenizer covers at least one byte.
    emoji = "🐬" * 10
    assert prompt_token_bound((messages.ChatMessage(role="user", content=emoji),)) == bound - len(prompt) + 40


def test_a_tighter_prompt_limit_from_the_models_tokenizer_is_enforced():
    client_id, node_id, keys = identity(1), identity(2), encryption_keys(2)
    request = make_request(node_id)
    client = ClientExchange(
        request, identity=client_id, node_encryption_key=keys.public_key, now_ms=NOW, prompt_token_limit=9
    )
    node = NodeExchange.accept(client.sealed_request, identity=node_id, encryption_keys=keys, now_ms=NOW)
    client.receive(node.header())
    with pytest.raises(SchemaError, match="tokens in"):
        client.receive(_lying_node_end(node, tokens_in=10))


def _exchange_with_credit(credit):
    client_id, node_id, keys = identity(1), identity(2), encryption_keys(2)
    client = ClientExchange(
        make_request(node_id, credit=credit),
        identity=client_id,
        node_encryption_key=keys.public_key,
        now_ms=NOW,
    )
    node = NodeExchange.accept(client.sealed_request, identity=node_id, encryption_keys=keys, now_ms=NOW)
    client.receive(node.header())
    return client, node


def test_a_receipt_must_bill_the_offered_wallet_or_nobody():
    wallet, other = eth_account(1), eth_account(2)
    credit = _credit(wallet, identity(1).public_key)
    others_credit = _credit(other, identity(1).public_key)
    # Billed to the wallet that authorised: countersigned.
    client, node = _exchange_with_credit(credit)
    client.receive(_lying_node_end(node, client=wallet.address, credit=credit))
    assert client.countersigned_receipt()
    # Served unpaid although credit was offered (e.g. the node found it uncovered): the node's loss, fine.
    client, node = _exchange_with_credit(credit)
    client.receive(_lying_node_end(node, client=None))
    assert client.countersigned_receipt()
    # Billed to another wallet, or billed when nothing was offered: refused.
    client, node = _exchange_with_credit(credit)
    with pytest.raises(SchemaError, match="credit, paying wallet"):
        client.receive(_lying_node_end(node, client=other.address, credit=others_credit))
    client, node = _exchange_with_credit(None)
    with pytest.raises(SchemaError, match="credit, paying wallet"):
        client.receive(_lying_node_end(node, client=wallet.address, credit=credit))


def test_top_logprobs_travel_per_token_and_no_more_than_asked():
    client, node = exchange_pair(top_logprobs=2)
    client.receive(node.header())
    batcher = TokenBatcher(node, interval_ms=50)
    top = (((5, -100), (6, -200)), ((7, -300), (8, -400)))
    first = client.receive(batcher.add("a", (1,), (-100,), top_logprobs_micro=top[:1], now_ms=NOW))
    assert (first.top_ids, first.top_logprobs_micro, first.top_per_token) == ((5, 6), (-100, -200), 2)
    assert batcher.add("b", (2,), (-300,), top_logprobs_micro=top[1:], now_ms=NOW + 1) is None
    second = client.receive(batcher.flush(NOW + 2))
    assert second.top_ids == (7, 8) and second.top_per_token == 2
    with pytest.raises(SchemaError):  # the same number of alternatives for every token
        batcher.add("c", (3, 4), top_logprobs_micro=(((1, -1),), ((1, -1), (2, -2))), now_ms=NOW + 3)
    # A node sending three alternatives when two were asked for fails the exchange.
    client, node = exchange_pair(top_logprobs=2)
    client.receive(node.header())
    with pytest.raises(StreamError, match="top logprobs"):
        client.receive(node.chunk("a", (1,), (-1,), (5, 6, 7), (-1, -2, -3)))
    with pytest.raises(SchemaError):  # alternatives that do not divide evenly among the tokens
        messages.ResponseChunk(
            seq=0, text="ab", token_ids=(1, 2), top_ids=(5, 6, 7), top_logprobs_micro=(1, 2, 3)
        )


def test_a_receipt_cannot_claim_more_than_its_request_allows():
    """The counts a node signs are bounded by the request (a request with max_tokens=16 once came back
    countersigned with tokens_out=40960 and tokens_in=4294967295): such a receipt is not even valid."""
    _, node = exchange_pair(max_tokens=16)
    honest = dict(
        request_id=node.request.request_id,
        request_hash=node.request_hash,
        request_bytes=len(node.signed_request.raw),
        model=node.request.model,
        client_key=node.client_key,
        max_tokens=16,
        tokens_in=7,
        tokens_out=16,
        output_hash=b"\3" * 32,
        started_at_ms=NOW,
        first_token_ms=1,
        duration_ms=2,
        finish_reason="stop",
    )
    messages.Receipt(**honest)
    with pytest.raises(SchemaError, match="max_tokens"):
        messages.Receipt(**honest | {"tokens_out": 40960})
    with pytest.raises(SchemaError, match="length in bytes"):
        messages.Receipt(**honest | {"tokens_in": 4294967295})
    with pytest.raises(SchemaError, match="wallet"):
        messages.Receipt(**honest | {"client": eth_account(1).address})


def test_the_node_never_claims_more_input_tokens_than_the_request_has_bytes():
    client, node = exchange_pair()
    client.receive(node.header())
    client.receive(node.end("stop", tokens_in=10**6, started_at_ms=NOW, first_token_ms=0, duration_ms=1))
    bound = prompt_token_bound(client.request.messages)
    assert client.receipt.message.tokens_in == min(bound, len(client.request_envelope)) == bound
