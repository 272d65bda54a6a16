"""A node's answer to a sampled request, held together by what the node signed.

An `Answer` is only ever built from `AnswerEvidence` that checks out, in this order: the request envelope
verifies (signed by the validator's session key; its time is not checked, evidence is judged after the
fact); the receipt envelope verifies and is signed by the node the request was addressed to; the receipt
names this request (hash, id, model, client key); the chunks decode, in sequence, and hash to the
receipt's `output_hash`; the receipt counts their token ids; an attached benchmark attestation is the
node's own, for this model. So whoever holds the evidence holds what that node answered to that request,
and nobody (the reporting validator included) can alter a token of it.

The validator that sent the request builds its evidence from the finished exchange
(`answer_from_exchange`); every other validator rebuilds the same answer from the evidence in a strike
report (`answer_from_evidence`) and runs the same checks on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from pool.audits import evidence_of
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.inference import ClientExchange, output_hash
from protocols.messages import (
    AnswerEvidence,
    BenchmarkAttestation,
    InferenceRequest,
    Receipt,
    ResponseChunk,
)
from protocols.schema import decode_message, encode_message
from validator.errors import EvidenceError

__all__ = ["Answer", "answer_from_evidence", "answer_from_exchange"]

LOGPROB_SCALE = 1_000_000  # chunks carry logprobs in millionths


@dataclass(frozen=True)
class Answer:
    """A verified answer (see the module docstring); build it with `answer_from_*`."""

    request: InferenceRequest
    node_key: bytes
    chunks: tuple[ResponseChunk, ...]
    receipt: Receipt
    attestation: BenchmarkAttestation | None
    evidence: AnswerEvidence

    @property
    def token_ids(self) -> tuple[int, ...]:
        return tuple(token for chunk in self.chunks for token in chunk.token_ids)

    @property
    def logprobs(self) -> tuple[float, ...] | None:
        """One natural-log probability per token id, or None when the node did not send them all."""
        values = [lp for chunk in self.chunks for lp in chunk.logprobs_micro]
        if len(values) != len(self.token_ids):
            return None
        return tuple(value / LOGPROB_SCALE for value in values)

    @property
    def text(self) -> str:
        return "".join(chunk.text for chunk in self.chunks)

    @property
    def finish_reason(self) -> str:
        return self.receipt.finish_reason

    def encoded_evidence(self) -> bytes:
        return encode_message(self.evidence)


def answer_from_exchange(exchange: ClientExchange, *, attestation: bytes | None = None) -> Answer:
    """The answer of a finished exchange (raises EvidenceError when it ended without a checked receipt).

    `attestation` is the node's signed BenchmarkAttestation envelope a speed check will compare against.
    """
    try:
        evidence = evidence_of(exchange)
    except ProtocolError as exc:
        raise EvidenceError(str(exc)) from exc
    return answer_from_evidence(dataclasses.replace(evidence, attestation=attestation))


def answer_from_evidence(evidence: bytes | AnswerEvidence) -> Answer:
    """Check `evidence` (see the module docstring) and return the answer it proves; EvidenceError if not."""
    try:
        if isinstance(evidence, bytes):
            evidence = decode_message(evidence, AnswerEvidence)
        signed_request = envelope.open_signed(evidence.request, InferenceRequest, check_time=False)
        signed_receipt = envelope.open_signed(evidence.receipt, Receipt, check_time=False)
        chunks = tuple(decode_message(chunk, ResponseChunk) for chunk in evidence.chunks)
        attestation = None
        if evidence.attestation is not None:
            signed_attestation = envelope.open_signed(
                evidence.attestation, BenchmarkAttestation, check_time=False
            )
            attestation = signed_attestation.message
    except ProtocolError as exc:
        raise EvidenceError(f"the evidence does not decode or verify: {exc}") from exc
    request, receipt = signed_request.message, signed_receipt.message
    node_key = request.node_key
    mismatches = [
        name
        for name, ok in (
            ("receipt signer", signed_receipt.signer == node_key),
            ("request hash", receipt.request_hash == hashlib.sha256(evidence.request).digest()),
            ("request id", receipt.request_id == request.request_id),
            ("model", receipt.model == request.model),
            ("client key", receipt.client_key == signed_request.signer),
            ("chunk order", [chunk.seq for chunk in chunks] == list(range(len(chunks)))),
            ("output hash", receipt.output_hash == output_hash(evidence.chunks)),
            ("tokens out", receipt.tokens_out == sum(len(chunk.token_ids) for chunk in chunks)),
        )
        if not ok
    ]
    if attestation is not None and not (
        signed_attestation.signer == node_key
        and attestation.node_key == node_key
        and attestation.model == request.model
    ):
        mismatches.append("attestation")
    if mismatches:
        raise EvidenceError(f"the evidence does not hold together: {', '.join(mismatches)}")
    return Answer(
        request=request,
        node_key=node_key,
        chunks=chunks,
        receipt=receipt,
        attestation=attestation,
        evidence=evidence,
    )
