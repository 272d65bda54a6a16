"""Benchmark attestations on a model's attestation topic: who measured which node, and how fast.

A node may attest to itself (what it claims), and validators attest to nodes they measured (what was
checked); anyone else's attestation about a node is rejected, so nobody can flood a pool with fake
numbers about other people's nodes. Which validator keys count is the caller's `is_validator_peer`.

`AttestationBook` keeps, per node, the newest attestation at each concurrency from the node itself and
from validators, and answers with the single-stream speed a router plans with: a validator's measurement
when there is one, else the node's own claim (which the router soon replaces with what it observes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from p2p import Validator
from p2p.validators import signed_message_validator
from protocols import envelope
from protocols.messages import BenchmarkAttestation

__all__ = ["AttestationBook", "AttestedSpeed", "attestation_validator"]


def attestation_validator(
    model: bytes,
    is_validator_peer: Callable[[bytes], bool],
    *,
    on_accept: Callable[[envelope.Signed[BenchmarkAttestation]], None] | None = None,
) -> Validator:
    """The validator of `attestation_topic(model)`; `is_validator_peer(ed25519 key)` names validators."""

    def authorise(signed: envelope.Signed[BenchmarkAttestation]) -> bool:
        attestation = signed.message
        if attestation.model != model:
            return False
        return signed.signer == attestation.node_key or is_validator_peer(signed.signer)

    return signed_message_validator(BenchmarkAttestation, authorise=authorise, on_accept=on_accept)


@dataclass(frozen=True)
class AttestedSpeed:
    """One stream's decode speed and time to first token, and whether a validator measured them."""

    tokens_per_s: float
    ttft_s: float
    by_validator: bool


class AttestationBook:
    """The attestations of one model's nodes; `validate` is the topic validator to subscribe with."""

    def __init__(self, model: bytes, is_validator_peer: Callable[[bytes], bool]) -> None:
        self.model = model
        # node key -> (by a validator?, concurrency) -> newest attestation
        self._latest: dict[bytes, dict[tuple[bool, int], BenchmarkAttestation]] = {}
        self._is_validator_peer = is_validator_peer
        self.validate = attestation_validator(model, is_validator_peer, on_accept=self._record)

    def _record(self, signed: envelope.Signed[BenchmarkAttestation]) -> None:
        attestation = signed.message
        slot = (signed.signer != attestation.node_key, attestation.concurrency)
        known = self._latest.setdefault(attestation.node_key, {}).get(slot)
        if known is None or attestation.measured_at_ms >= known.measured_at_ms:
            self._latest[attestation.node_key][slot] = attestation

    def speed(self, node_key: bytes) -> AttestedSpeed | None:
        """The node's single-stream speed (its lowest-concurrency run), a validator's figures first."""
        entries = self._latest.get(node_key, {})
        for by_validator in (True, False):
            runs = sorted((c, a) for (v, c), a in entries.items() if v == by_validator)
            if runs:
                attestation = runs[0][1]
                return AttestedSpeed(
                    attestation.decode_tps_milli / 1000, attestation.ttft_ms / 1000, by_validator
                )
        return None
