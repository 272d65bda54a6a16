"""The inference service over real libp2p hosts on 127.0.0.1: encrypted answers, receipts, hostile peers."""

import os

import pytest
import trio

from node.inference import InferenceService, ServiceLimits
from node.models.loading import generate_greedy, load_model
from p2p.testing import open_host_group, wait_until
from pool import InferenceFailed, NodeContact, complete
from protocols.ids import INFERENCE_PROTOCOL
from protocols.inference import ClientExchange
from protocols.keys import EncryptionKeyPair, Identity
from protocols.testing import make_request

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture
async def network(tmp_path, tiny_model):
    """A client host and a node host serving the tiny model; yields (client, node host, service, contact)."""
    async with open_host_group(tmp_path, 2) as (client, node_host):
        identity = Identity(node_host.signing_seed())
        service = InferenceService(
            identity=identity,
            encryption_keys=EncryptionKeyPair.generate(),
            model=tiny_model,
            limits=ServiceLimits(max_new_tokens=24, receipt_timeout=5),
        )
        node_host.set_stream_handler(INFERENCE_PROTOCOL, service.handle)
        contact = NodeContact(
            peer_id=node_host.peer_id,
            node_key=identity.public_key,
            encryption_key=service.encryption_keys.public_key,
            model=service.model_id,
        )
        yield client, node_host, service, contact


async def _ask(client, contact, **kwargs):
    return await complete(client, contact, [("user", PROMPT)], identity=Identity.generate(), **kwargs)


@pytest.mark.integration
@pytest.mark.trio
async def test_encrypted_answer_streams_back_with_a_countersigned_receipt(network, tiny_model):
    client, _, service, contact = network
    pieces = []
    client_identity = Identity.generate()
    completion = await complete(
        client, contact, [("user", PROMPT)], identity=client_identity, max_tokens=16, on_text=pieces.append
    )
    expected_ids = generate_greedy(tiny_model, [{"role": "user", "content": PROMPT}], 16)
    assert completion.text == tiny_model.tokenizer.decode(expected_ids, skip_special_tokens=True)
    assert "".join(pieces) == completion.text
    assert completion.tokens_out == len(expected_ids)
    assert completion.finish_reason in ("stop", "length")

    await wait_until(lambda: len(service.receipts) == 1, timeout=10)
    receipt = service.receipts[0]
    assert receipt.client_key == client_identity.public_key
    assert receipt.node_key == service.identity.public_key
    assert receipt.receipt.tokens_out == completion.tokens_out
    assert receipt.receipt.model == service.model_id
    assert service.statistics().countersigned == 1


@pytest.mark.integration
@pytest.mark.trio
async def test_garbage_replays_and_misaddressed_requests_are_refused_and_the_node_keeps_serving(network):
    client, _, service, contact = network

    async def send_raw(sealed: bytes) -> bytes:
        stream = await client.open_stream(contact.peer_id, INFERENCE_PROTOCOL)
        await stream.write_message(sealed)
        reply = await stream.read(1024, timeout=10)
        await stream.close()
        return reply

    assert await send_raw(os.urandom(300)) == b""  # undecryptable: reset, nothing sent back

    other_node = Identity.generate()
    misaddressed = ClientExchange(
        make_request(other_node, model=contact.model),
        identity=Identity.generate(),
        node_encryption_key=contact.encryption_key,
    )
    assert await send_raw(misaddressed.sealed_request) == b""

    valid = ClientExchange(
        make_request(Identity(b"\0" * 32), model=contact.model, node_key=contact.node_key, max_tokens=4),
        identity=Identity.generate(),
        node_encryption_key=contact.encryption_key,
    )
    assert await send_raw(valid.sealed_request) != b""  # served (header at least)
    assert await send_raw(valid.sealed_request) == b""  # the same sealed bytes again: a replay

    await wait_until(lambda: service.statistics().refused == 3, timeout=10)
    reasons = " ".join(service.statistics().refusals)
    assert "replay" in reasons.lower()
    assert "another node" in reasons
    completion = await _ask(client, contact, max_tokens=4)
    assert completion.tokens_out > 0


@pytest.mark.integration
@pytest.mark.trio
async def test_a_model_the_node_does_not_serve_is_a_clear_error(network):
    client, _, _, contact = network
    wrong = NodeContact(contact.peer_id, contact.node_key, contact.encryption_key, model=b"\x11" * 32)
    with pytest.raises(InferenceFailed, match="does not serve the requested model"):
        await _ask(client, wrong)


@pytest.mark.integration
@pytest.mark.trio
async def test_a_client_vanishing_mid_answer_or_oversized_request_does_not_hurt_the_node(network):
    client, _, service, contact = network
    exchange = ClientExchange(
        make_request(Identity(b"\1" * 32), model=contact.model, node_key=contact.node_key, max_tokens=24),
        identity=Identity.generate(),
        node_encryption_key=contact.encryption_key,
    )
    stream = await client.open_stream(contact.peer_id, INFERENCE_PROTOCOL)
    await stream.write_message(exchange.sealed_request)
    exchange.receive(await stream.read_message(1 << 16))  # header
    await stream.reset()  # gone mid-answer, before any receipt

    oversized = await client.open_stream(contact.peer_id, INFERENCE_PROTOCOL)
    await oversized.write(b"\xff\xff\xff\xff\x0f")  # announces a 4 GiB request
    assert await oversized.read(16, timeout=10) == b""

    await wait_until(lambda: service.statistics().abandoned >= 2, timeout=15)
    with trio.fail_after(60):
        completion = await _ask(client, contact, max_tokens=4)
    assert completion.countersigned_receipt is not None
    await wait_until(lambda: service.statistics().countersigned == 1, timeout=10)
    assert len(service.receipts) == 1  # only the completed exchange earned a receipt
