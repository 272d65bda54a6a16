"""The inference service between a client and a node joined in memory (`p2p.memory`: the real streams, their
framing limits and deadlines): encrypted answers, receipts, hostile peers."""

import contextlib
import dataclasses
import functools
import os
import time

import pytest
import trio
import trio_asyncio

from node.credits import CreditBook, PaymentPolicy, most_a_request_costs
from node.engines import ChatTurn, GenerationRequest
from node.inference import InferenceService, ServiceLimits
from node.ledger import PersistentReplayCache, open_ledger
from node.testing import LongAnswers
from p2p import P2PError
from p2p.memory import open_memory_network
from p2p.testing import wait_until
from pool import InferenceFailed, NodeContact, complete
from protocols import e2e, envelope
from protocols import testing as pt
from protocols.ids import INFERENCE_PROTOCOL
from protocols.inference import ClientExchange
from protocols.keys import EncryptionKeyPair, Identity
from protocols.messages import CreditAuthorisation, ResponseChunk, ResponseEnd, eth_sign
from protocols.schema import decode_message
from protocols.testing import make_request

PROMPT = "What is the capital of France?"


@dataclasses.dataclass
class Network:
    client: object
    node_host: object
    service: InferenceService
    contact: NodeContact
    ledger: object


@contextlib.asynccontextmanager
async def _network(tmp_path, engine, *, payments=None, limits=None, keys=None):
    """A client host and a node host serving the tiny model, with a ledger; yields a Network. `keys`: the
    accepted encryption keys, current first (default: one fresh key)."""
    keys = keys or [EncryptionKeyPair.generate()]
    async with (
        trio_asyncio.open_loop(),
        open_ledger(tmp_path / "ledger") as ledger,
        open_memory_network() as memory,
        trio.open_nursery() as nursery,
    ):
        client, node_host = memory.host(), memory.host()
        identity = Identity(node_host.signing_seed())
        model_id = engine.loaded.manifest.model_id()
        service = InferenceService(
            identity=identity,
            encryption_keys=lambda: keys,
            engine=engine,
            model_id=model_id,
            limits=limits or ServiceLimits(max_new_tokens=64, receipt_timeout=5),
            ledger=ledger,
            replay=PersistentReplayCache(ledger),
            payments=payments,
        )
        nursery.start_soon(ledger.serve_nonce_writes)
        node_host.set_stream_handler(INFERENCE_PROTOCOL, service.handle)
        contact = NodeContact(node_host.peer_id, identity.public_key, keys[0].public_key, model_id)
        yield Network(client, node_host, service, contact, ledger)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def network(tmp_path, tiny_engine):
    async with _network(tmp_path, tiny_engine) as net:
        yield net


async def _ask(net: Network, **kwargs) -> object:
    return await complete(net.client, net.contact, [("user", PROMPT)], identity=Identity.generate(), **kwargs)


async def _send_raw(net: Network, sealed: bytes, response_key: bytes | None = None) -> str | None:
    """Send sealed bytes; return the node's refusal text (None when it reset the stream or answered)."""
    stream = await net.client.open_stream(net.contact.peer_id, INFERENCE_PROTOCOL)
    await stream.write_message(sealed)
    frames = []
    with contextlib.suppress(P2PError):  # the node reset the stream
        while len(frames) < 2:
            frames.append(await stream.read_message(1 << 16, timeout=10))
    await stream.close()
    if len(frames) < 2 or response_key is None:
        return None
    opener = e2e.StreamOpener(response_key, frames[0])
    plaintext, final = opener.open(frames[1])
    end = decode_message(plaintext, (ResponseChunk, ResponseEnd))
    if not final:
        return None  # an answer, not a refusal
    assert isinstance(end, ResponseEnd) and end.receipt is None
    return end.error


async def _send_request(net: Network, **fields) -> tuple[ClientExchange, object]:
    """A sealed request sent on a new stream, for tests that read the answer frame by frame."""
    request = make_request(
        Identity.generate(), model=net.contact.model, node_key=net.contact.node_key, **fields
    )
    exchange = ClientExchange(
        request, identity=Identity.generate(), node_encryption_key=net.contact.encryption_key
    )
    stream = await net.client.open_stream(net.contact.peer_id, INFERENCE_PROTOCOL)
    await stream.write_message(exchange.sealed_request)
    return exchange, stream


def _signed_request(net: Network, *, now_ms: int | None = None, **fields) -> bytes:
    """A request envelope for this node, signed by a fresh client key (`fields` override the request)."""
    values = dict(model=net.contact.model, node_key=net.contact.node_key, request_id=os.urandom(16))
    request = make_request(Identity.generate(), **(values | fields))
    return envelope.sign(request, Identity.generate(), now_ms=now_ms, ttl_ms=60_000, compress=False)


def _sealed(net: Network, signed: bytes) -> tuple[bytes, bytes]:
    return e2e.seal(signed, net.contact.encryption_key)


@pytest.mark.integration
@pytest.mark.trio
async def test_an_encrypted_answer_streams_back_and_its_receipt_is_stored_before_the_ack(
    network, tiny_engine
):
    pieces = []
    completion = await _ask(network, max_tokens=16, on_text=pieces.append)
    request = GenerationRequest(messages=(ChatTurn("user", PROMPT),), max_tokens=16)
    pieces_alone = [piece async for piece in tiny_engine.generate(request)]
    expected = [i for piece in pieces_alone for i in piece.token_ids]
    assert completion.text == await tiny_engine.detokenize(expected)
    # Every token's logprob travels, unasked (validators check them; asking would give them away).
    chunks = [decode_message(chunk) for chunk in completion.exchange.chunks]
    sent = [lp for chunk in chunks for lp in chunk.logprobs_micro]
    alone = [lp for piece in pieces_alone for lp in piece.logprobs]
    assert len(sent) == 16 and all(abs(a / 1e6 - b) < 1e-3 for a, b in zip(sent, alone, strict=True))
    assert "".join(pieces) == completion.text
    assert completion.tokens_out == len(expected) == 16
    assert completion.finish_reason == "length"
    assert completion.receipt_stored  # acknowledged, therefore committed
    (row,) = await network.ledger.receipts()
    assert row.tokens_out == 16 and row.client is None and row.finish_reason == "length"
    assert row.tokens_in == len(await tiny_engine.tokenize_chat(request.messages))
    assert network.service.statistics().stored == 1


@pytest.mark.integration
@pytest.mark.trio
async def test_tokens_go_out_in_a_few_frames_not_one_per_token(tmp_path, tiny_engine):
    # ignore_eos: the answer is 48 tokens long whatever the tiny model would end it on.
    async with _network(tmp_path, LongAnswers(tiny_engine)) as network:
        exchange, stream = await _send_request(network, max_tokens=48)
        chunks = 0
        while exchange.state != "done":
            message = exchange.receive(await stream.read_message(1 << 16, timeout=10))
            chunks += message is not None and not isinstance(message, ResponseEnd)
        await stream.write_message(exchange.countersigned_receipt())
        assert exchange.receive_ack(await stream.read_message(1 << 10, timeout=10)).stored
        await stream.close()
    assert exchange.tokens_received == 48
    assert chunks < 48  # the tiny model makes tokens faster than the 25 ms pace: they are batched


@pytest.mark.integration
@pytest.mark.trio
async def test_hostile_requests_are_refused_with_a_reason_while_other_streams_carry_on(network):
    net = network
    answers = []

    async def honest() -> None:
        answers.append(await _ask(net, max_tokens=40))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(honest)
        # Garbage: nothing opens, the stream is reset.
        assert await _send_raw(net, os.urandom(300)) is None
        # Sealed to a key this node does not hold: nobody to answer, reset.
        sealed, _ = e2e.seal(_signed_request(net), EncryptionKeyPair.generate().public_key)
        assert await _send_raw(net, sealed) is None
        # Oversized: announced over the limit, reset before reading it.
        stream = await net.client.open_stream(net.contact.peer_id, INFERENCE_PROTOCOL)
        await stream.write(b"\xff\xff\xff\xff\x0f")
        assert await stream.read(16, timeout=10) == b""
        # Misaddressed: sealed to this node's key but addressed to another node.
        sealed, key = _sealed(net, _signed_request(net, node_key=os.urandom(32)))
        assert "another node" in await _send_raw(net, sealed, key)
        # Expired: issued two minutes ago with a one-minute life.
        sealed, key = _sealed(net, _signed_request(net, now_ms=time.time_ns() // 1_000_000 - 120_000))
        assert "expired" in await _send_raw(net, sealed, key)
        # Forged: the envelope's signature does not match its content.
        signed = _signed_request(net)
        sealed, key = _sealed(net, signed[:-1] + bytes([signed[-1] ^ 1]))
        assert "signature" in await _send_raw(net, sealed, key)
        # Replayed: the same sealed bytes again, as anyone on the path could send them.
        sealed, key = _sealed(net, _signed_request(net, max_tokens=2))
        assert await _send_raw(net, sealed, key) is None  # served
        assert "already accepted" in await _send_raw(net, sealed, key)
        # A model the node does not serve.
        wrong = dataclasses.replace(net.contact, model=b"\x11" * 32)
        with pytest.raises(InferenceFailed, match="does not serve the requested model"):
            await complete(net.client, wrong, [("user", "hi")], identity=Identity.generate())
    assert len(answers) == 3 and all(a.tokens_out == 40 and a.receipt_stored for a in answers)
    refusals = net.service.statistics().refusals
    for code in (
        "malformed",
        "undecryptable",
        "oversized",
        "misaddressed",
        "expired",
        "bad_signature",
        "replayed",
    ):
        assert refusals.get(code) == 1, (code, refusals)
    assert refusals.get("wrong_model") == 1
    metrics = net.service.metrics.render().decode()
    assert 'dolphin_node_refusals_total{reason="replayed"} 1.0' in metrics


class _AlwaysReady(LongAnswers):
    """An engine that always has its next piece ready, as one reading a server's stream that arrived in
    big chunks: the tiny model's first piece, repeated up to max_tokens with a checkpoint between. Its
    producer hands over a piece at any moment, including the one at which the answer's reader leaves."""

    async def generate(self, request: GenerationRequest):
        async with contextlib.aclosing(super().generate(request)) as pieces:
            first = await anext(pieces)
        token = dataclasses.replace(
            first,
            token_ids=first.token_ids[:1],
            logprobs=first.logprobs[:1],
            top_logprobs=first.top_logprobs[:1],
            finish_reason=None,
            prompt_tokens=0,
        )
        for _ in range(request.max_tokens - 1):
            yield token
            await trio.lowlevel.checkpoint()
        yield dataclasses.replace(token, finish_reason="length", prompt_tokens=first.prompt_tokens or 1)


@pytest.mark.integration
@pytest.mark.trio
async def test_a_client_vanishing_mid_answer_stops_its_generation(tmp_path, tiny_engine):
    # Every answer runs to max_tokens (ignore_eos): left alone, this one would be 1,500 tokens long.
    limits = ServiceLimits(max_new_tokens=1500, receipt_timeout=5)
    async with _network(tmp_path, LongAnswers(tiny_engine), limits=limits) as net:
        before = tiny_engine.statistics().tokens_generated
        exchange, stream = await _send_request(net, max_tokens=1500)
        exchange.receive(await stream.read_message(1 << 16, timeout=10))  # header
        exchange.receive(await stream.read_message(1 << 16, timeout=10))  # first tokens
        await stream.reset()
        await wait_until(lambda: tiny_engine.load().running == 0, timeout=60)
        await wait_until(lambda: net.service.statistics().abandoned == 1, timeout=30)
        assert net.node_host.handler_failures == 0
        assert exchange.tokens_received < 200
        assert tiny_engine.statistics().tokens_generated - before < 400
        assert (await _ask(net, max_tokens=4)).receipt_stored  # and the node keeps serving


@pytest.mark.integration
@pytest.mark.trio
async def test_clients_leaving_while_the_engine_has_a_piece_ready_count_as_abandoned(tmp_path, tiny_engine):
    """The engine hands over a piece at the moment the sender stops reading: that used to fail the handler
    (a piece sent into the closed channel) instead of ending the answer as abandoned. Whether it does
    depends on trio's scheduling order, so eight clients leave."""
    limits = ServiceLimits(max_new_tokens=1500, receipt_timeout=5)
    async with _network(tmp_path, _AlwaysReady(tiny_engine), limits=limits) as net:
        for _ in range(8):
            exchange, stream = await _send_request(net, max_tokens=1500)
            exchange.receive(await stream.read_message(1 << 16, timeout=10))  # header
            exchange.receive(await stream.read_message(1 << 16, timeout=10))  # first tokens
            await stream.reset()
        ended = lambda: net.service.statistics().abandoned + net.node_host.handler_failures  # noqa: E731
        await wait_until(lambda: ended() == 8, timeout=30)
        assert (net.service.statistics().abandoned, net.node_host.handler_failures) == (8, 0)
        assert net.service.active == 0
        assert (await _ask(net, max_tokens=4)).tokens_out == 4


@pytest.mark.integration
@pytest.mark.trio
async def test_a_paused_node_refuses_with_its_reason_and_resumes(network):
    network.service.pause("draining", "this node is shutting down; ask another")
    with pytest.raises(InferenceFailed, match="shutting down"):
        await _ask(network, max_tokens=4)
    network.service.resume("draining")
    assert (await _ask(network, max_tokens=4)).tokens_out == 4


def _credit(wallet, session: Identity, model: bytes, **overrides) -> CreditAuthorisation:
    fields = dict(
        client=wallet.address,
        session_key=session.public_key,
        model=model,
        max_credits=1_000,
        nonce=1,
        expiry=int(time.time()) + 3600,
    )
    fields.update(overrides)
    return eth_sign(CreditAuthorisation, wallet, pt.TEST_DOMAIN, **fields)


@pytest.mark.integration
@pytest.mark.trio
async def test_credit_authorisations_are_checked_and_only_covered_ones_name_the_payer(tmp_path, tiny_engine):
    rich, poor, forger, modest = (pt.eth_account(n) for n in (1, 2, 3, 4))
    # The model costs 1 credit unit a token: a 4-token answer to PROMPT costs far less than the 1,000
    # units each wallet authorises, and `modest` holds less than that but more than the answer costs.
    balances = {rich.address: 5_000, poor.address: 10, modest.address: 900}
    book = CreditBook(lambda wallet: balances[wallet], read_price=lambda model: 10**6, refresh_s=3600)
    policy = PaymentPolicy(credit_domain=pt.TEST_DOMAIN, book=book, serve_unpaid=False)
    async with _network(tmp_path, tiny_engine, payments=policy) as net:
        session = Identity.generate()
        paid = await complete(
            net.client,
            net.contact,
            [("user", PROMPT)],
            identity=session,
            max_tokens=4,
            credit=_credit(rich, session, net.contact.model),
        )
        assert paid.receipt_stored
        (row,) = await net.ledger.receipts()
        assert row.client == "0x" + rich.address.hex()
        # Credit below the authorised cap still pays for what this answer can cost (a client that caps its
        # authorisations at its whole credit stays paid after a debit).
        session = Identity.generate()
        credit = _credit(modest, session, net.contact.model)
        paid = await complete(
            net.client, net.contact, [("user", PROMPT)], identity=session, max_tokens=4, credit=credit
        )
        assert paid.receipt.client == modest.address
        request_cost = most_a_request_costs(
            10**6, pt.make_request(pt.identity(2), prompt=PROMPT, max_tokens=4)
        )
        assert balances[modest.address] < credit.max_credits and request_cost < balances[modest.address]
        # A wallet whose credit does not cover the authorisation: unpaid, and this node serves paid only.
        session = Identity.generate()
        with pytest.raises(InferenceFailed, match="paid requests only"):
            await complete(
                net.client,
                net.contact,
                [("user", PROMPT)],
                identity=session,
                credit=_credit(poor, session, net.contact.model),
            )
        # A forged authorisation: signed by another wallet than the one it names.
        session = Identity.generate()
        forged = dataclasses.replace(_credit(forger, session, net.contact.model), client=rich.address)
        with pytest.raises(InferenceFailed, match="not signed by the address it names"):
            await complete(net.client, net.contact, [("user", PROMPT)], identity=session, credit=forged)
        # An authorisation for another session key.
        session = Identity.generate()
        stolen = _credit(rich, Identity.generate(), net.contact.model)
        with pytest.raises(InferenceFailed, match="another session key"):
            await complete(net.client, net.contact, [("user", PROMPT)], identity=session, credit=stolen)
        # No authorisation at all.
        with pytest.raises(InferenceFailed, match="paid requests only"):
            await _ask(net, max_tokens=4)
        refusals = net.service.statistics().refusals
        assert refusals == {"unpaid": 2, "bad_credit": 2}


@pytest.mark.integration
@pytest.mark.trio
async def test_a_request_sealed_to_the_previous_key_is_served_during_its_grace(tmp_path, tiny_engine):
    current, previous = EncryptionKeyPair.generate(), EncryptionKeyPair.generate()
    async with _network(tmp_path, tiny_engine, keys=[current, previous]) as net:
        old_contact = dataclasses.replace(net.contact, encryption_key=previous.public_key)
        completion = await complete(
            net.client, old_contact, [("user", PROMPT)], identity=Identity.generate(), max_tokens=3
        )
        assert completion.tokens_out == 3 and completion.receipt_stored
        retired = dataclasses.replace(net.contact, encryption_key=EncryptionKeyPair.generate().public_key)
        with pytest.raises(InferenceFailed):  # a key the node no longer (or never) held: nothing opens
            await complete(
                net.client, retired, [("user", PROMPT)], identity=Identity.generate(), max_tokens=3
            )
        assert net.service.statistics().refusals == {"undecryptable": 1}


@pytest.mark.integration
@pytest.mark.trio
async def test_an_overloaded_node_says_so(tmp_path, tiny_engine):
    async with _network(tmp_path, tiny_engine, limits=ServiceLimits(max_waiting=0)) as net:
        with pytest.raises(InferenceFailed, match="too many requests waiting"):
            await _ask(net, max_tokens=2)


async def _take_answer_without_countersigning(net: Network, wallet) -> str | None:
    """A freeloader: a paid request, the whole answer read, the stream closed with no countersignature.
    Returns the node's refusal, or None when it answered."""
    session = Identity.generate()
    request = make_request(
        Identity.generate(),
        model=net.contact.model,
        node_key=net.contact.node_key,
        request_id=os.urandom(16),
        max_tokens=4,
        credit=_credit(wallet, session, net.contact.model, nonce=int.from_bytes(os.urandom(8), "big")),
    )
    exchange = ClientExchange(request, identity=session, node_encryption_key=net.contact.encryption_key)
    stream = await net.client.open_stream(net.contact.peer_id, INFERENCE_PROTOCOL)
    await stream.write_message(exchange.sealed_request)
    while exchange.state != "done":
        message = exchange.receive(await stream.read_message(1 << 18, timeout=30))
        if isinstance(message, ResponseEnd) and message.error:
            await stream.close()
            return message.error
    await stream.close()  # the answer is ours; the receipt is never countersigned
    return None


@pytest.mark.integration
@pytest.mark.trio
async def test_a_wallet_that_never_countersigns_is_not_served_again_and_again(tmp_path, tiny_engine):
    """Attack: take answers on a covered wallet's credit and never countersign, so the node has nothing to
    be paid with. After the budget of unacknowledged answers the wallet is refused; others are not."""
    freeloader, honest = pt.eth_account(1), pt.eth_account(2)
    book = CreditBook(lambda wallet: 10**9, read_price=lambda model: 10**6, refresh_s=3600)
    policy = PaymentPolicy(credit_domain=pt.TEST_DOMAIN, book=book, serve_unpaid=False)
    limits = ServiceLimits(max_new_tokens=64, receipt_timeout=2, unacknowledged_budget=3)
    async with _network(tmp_path, tiny_engine, payments=policy, limits=limits) as net:
        for _ in range(3):
            assert await _take_answer_without_countersigning(net, freeloader) is None
        # Each counts once the node's wait for its receipt ends (the closed stream), not while it runs.
        owed = functools.partial(net.service.unacknowledged.owed, b"wallet:" + freeloader.address)
        await wait_until(lambda: owed() == 3, timeout=10)
        refusal = await _take_answer_without_countersigning(net, freeloader)
        assert refusal is not None and "never countersigned" in refusal
        assert net.service.statistics().refusals == {"unacknowledged": 1}
        # A wallet that countersigns is served as before, again and again.
        for _ in range(4):
            session = Identity.generate()
            credit = _credit(honest, session, net.contact.model, nonce=int.from_bytes(os.urandom(8), "big"))
            paid = await complete(
                net.client, net.contact, [("user", PROMPT)], identity=session, max_tokens=4, credit=credit
            )
            assert paid.receipt_stored
        assert net.service.unacknowledged.owed(b"wallet:" + honest.address) == 0
