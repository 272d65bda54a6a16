"""Benchmark attestations on a model's attestation topic: who measured which node, and how fast.

A node may attest to itself (what it claims), and validators attest to nodes they measured (what was
checked); anyone else's attestation about a node is rejected, so nobody can flood a pool with fake
numbers about other people's nodes. Which validator keys count is the caller's `is_validator_peer`.
"""

from __future__ import annotations

from collections.abc import Callable

from p2p import Validator
from p2p.validators import signed_message_validator
from protocols import envelope
from protocols.messages import BenchmarkAttestation


def attestation_validator(model: bytes, is_validator_peer: Callable[[bytes], bool]) -> Validator:
    """The validator of `attestation_topic(model)`; `is_validator_peer(ed25519 key)` names validators."""

    def authorise(signed: envelope.Signed[BenchmarkAttestation]) -> bool:
        attestation = signed.message
        if attestation.model != model:
            return False
        return signed.signer == attestation.node_key or is_validator_peer(signed.signer)

    return signed_message_validator(BenchmarkAttestation, authorise=authorise)
