"""Validators' published verdicts on nodes (`NodeStanding` on STANDING_TOPIC), as routers read them.

A verdict counts only when the wallet that signed it (EIP-712, the validators' domain) is a current
validator — `is_validator`, read from the chain by the caller; without a chain there are no validators and
so no standing. Each validator's latest verdict per node and model is kept (a later epoch replaces an
earlier one; within an epoch, the later envelope) until its envelope expires.

A node's standing is the verdict most of the current validators give it (a tie goes to the worse one, so
two validators disagreeing never make a node look better than one of them says), and its suspicion the
mean of theirs.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass

from p2p import Verdict, signed_message_validator
from pool.bans import IsValidator
from protocols import envelope
from protocols.eth import TypedDomain
from protocols.messages import NodeStanding, eth_signer

__all__ = ["Standing", "StandingBook"]

_SEVERITY = {"good": 0, "suspect": 1, "excluded": 2, "banned": 3}


@dataclass(frozen=True)
class Standing:
    """The validators' view of one node: `status` (good, suspect, excluded, banned), `suspicion` in
    [0, 1], and how many validators' verdicts it rests on."""

    status: str
    suspicion: float
    validators: int


@dataclass(frozen=True)
class _Verdict:
    epoch: int
    issued_at_ms: int
    expires_at_ms: int
    status: str
    suspicion: float


class StandingBook:
    """Validators' verdicts; `validate` is the validator to subscribe to STANDING_TOPIC with."""

    def __init__(self, domain: TypedDomain, is_validator: IsValidator) -> None:
        self.domain = domain
        self.is_validator = is_validator
        # (node key, model) -> validator address -> its latest verdict
        self._verdicts: dict[tuple[bytes, bytes], dict[bytes, _Verdict]] = {}
        self.validate = signed_message_validator(NodeStanding, authorise=self._admit, on_accept=self._record)

    def _admit(self, signed: envelope.Signed[NodeStanding]) -> Verdict:
        standing = signed.message
        if not self.is_validator(eth_signer(standing, self.domain)):  # SignatureError: rejected
            return Verdict.REJECT
        known = self._verdicts.get((standing.node_key, standing.model), {}).get(standing.validator)
        if known is not None and (standing.epoch, signed.issued_at_ms) <= (known.epoch, known.issued_at_ms):
            return Verdict.IGNORE  # not news
        return Verdict.ACCEPT

    def _record(self, signed: envelope.Signed[NodeStanding]) -> None:
        standing = signed.message
        self._verdicts.setdefault((standing.node_key, standing.model), {})[standing.validator] = _Verdict(
            epoch=standing.epoch,
            issued_at_ms=signed.issued_at_ms,
            expires_at_ms=signed.expires_at_ms,
            status=standing.status,
            suspicion=standing.suspicion_micro / 1e6,
        )

    def standing(self, node_key: bytes, model: bytes, now_ms: int | None = None) -> Standing | None:
        """The node's standing with the current validators, or None when none of them judged it."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        verdicts = self._verdicts.get((node_key, model), {})
        for validator in [v for v, verdict in verdicts.items() if verdict.expires_at_ms <= now_ms]:
            del verdicts[validator]
        current = [verdict for validator, verdict in verdicts.items() if self.is_validator(validator)]
        if not current:
            return None
        votes = Counter(verdict.status for verdict in current)
        status = max(votes, key=lambda s: (votes[s], _SEVERITY[s]))
        suspicion = statistics.fmean(verdict.suspicion for verdict in current)
        return Standing(status=status, suspicion=suspicion, validators=len(current))
