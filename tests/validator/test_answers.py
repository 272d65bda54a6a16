"""Evidence: an answer rebuilt from it is exactly what the node signed; any change is refused."""

import dataclasses

import pytest

from protocols import envelope
from protocols import testing as pt
from protocols.messages import AnswerEvidence, ResponseChunk
from protocols.schema import decode_message, encode_message
from validator.answers import answer_from_evidence
from validator.challenges import Challenge
from validator.errors import EvidenceError
from validator.testing import NodeKeys, answer_in_process, attestation_for

pytestmark = [pytest.mark.integration, pytest.mark.trio]

CHALLENGE = Challenge("chat", (("user", "hi"),), max_tokens=12)


async def _evidence(honest_engine, reference, **kwargs):
    answer = await answer_in_process(honest_engine, CHALLENGE, model=reference.model_id, **kwargs)
    return answer, answer.evidence


async def test_the_evidence_round_trips(honest_engine, reference):
    keys = NodeKeys()
    attestation = attestation_for(keys, reference.model_id, decode_tps=5.0)
    answer, evidence = await _evidence(honest_engine, reference, keys=keys, attestation=attestation)
    again = answer_from_evidence(encode_message(evidence))
    assert again.token_ids == answer.token_ids and again.text == answer.text
    assert again.node_key == keys.identity.public_key and again.attestation.decode_tps_milli == 5000
    assert len(again.logprobs) == len(again.token_ids)


async def test_a_changed_token_breaks_the_output_hash(honest_engine, reference):
    _, evidence = await _evidence(honest_engine, reference)
    first = decode_message(evidence.chunks[0], ResponseChunk)
    forged = dataclasses.replace(first, token_ids=(first.token_ids[0] + 1, *first.token_ids[1:]))
    tampered = dataclasses.replace(evidence, chunks=(encode_message(forged), *evidence.chunks[1:]))
    with pytest.raises(EvidenceError, match="output hash"):
        answer_from_evidence(tampered)


async def test_dropped_or_reordered_chunks_are_refused(honest_engine, reference):
    _, evidence = await _evidence(honest_engine, reference)
    with pytest.raises(EvidenceError):
        answer_from_evidence(dataclasses.replace(evidence, chunks=evidence.chunks[1:]))


async def test_a_receipt_from_another_node_or_for_another_request_is_refused(honest_engine, reference):
    _, evidence = await _evidence(honest_engine, reference)
    _, other = await _evidence(honest_engine, reference)
    with pytest.raises(EvidenceError, match="receipt signer|request hash"):
        answer_from_evidence(dataclasses.replace(evidence, receipt=other.receipt))
    with pytest.raises(EvidenceError):
        answer_from_evidence(dataclasses.replace(evidence, request=other.request))


async def test_an_attestation_about_another_node_is_refused(honest_engine, reference):
    _, evidence = await _evidence(honest_engine, reference)
    stranger = attestation_for(NodeKeys(), reference.model_id, decode_tps=1.0)
    with pytest.raises(EvidenceError, match="attestation"):
        answer_from_evidence(dataclasses.replace(evidence, attestation=stranger))


async def test_garbage_is_an_evidence_error():
    with pytest.raises(EvidenceError):
        answer_from_evidence(b"\x93garbage")
    junk = AnswerEvidence(
        request=envelope.sign(pt.make_request(pt.identity(2)), pt.identity(1)),
        chunks=(),
        receipt=b"x",
        observed_first_token_ms=0,
        observed_duration_ms=0,
    )
    with pytest.raises(EvidenceError):
        answer_from_evidence(junk)
