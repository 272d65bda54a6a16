"""The gossiped ban list: which nodes validators banned, as every peer can check for itself.

A ban is a function of its evidence, whoever publishes the notice. `ban_shortfall` applies the network's
rules (`BanRules`, which the chain sets: `Slashing.strikeRules`) to the strikes a `BanNotice` carries:
only strikes signed by current validators and dated within the window that ends at the notice's epoch
count, each validator once (its most severe strike), at the severity the rules give its reason (never the
severity the strike claims); together they need `ban_points` from `ban_validators` distinct validators.
Routers apply it to the reasons the strikes claim; validators, who re-ran each strike's checks, apply it to
the reasons they found (`reason_of`), so a notice stitched from strikes they downgraded bans nothing.

`ban_validator` is the validator of BANS_TOPIC (validators publish, routers and validators read).
`BanList` records the bans that pass and answers "is this node banned now": a ban lasts while its notice is
valid (its signed envelope's expiry, at most a year; validators date a temporary ban to end with it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from p2p import Validator, signed_message_validator
from protocols import envelope
from protocols.eth import TypedDomain
from protocols.messages import STRIKE_REASONS, BanNotice, StrikeReport, eth_signer

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SEVERITIES", "BanList", "BanRules", "IsValidator", "ban_shortfall", "ban_validator"]

IsValidator = Callable[[bytes], bool]
"""Whether an Ethereum address is a current validator (read from the chain by the caller)."""

DEFAULT_SEVERITIES: Mapping[str, int] = {
    "fabricated_output": 9,
    "wrong_model": 8,
    "tokenizer_mismatch": 7,
    "bad_receipt": 7,
    "false_benchmark": 6,
    "too_fast": 5,
    "too_slow": 3,
    "unavailable": 1,
    "user_report": 4,
}


@dataclass(frozen=True)
class BanRules:
    """What a ban needs (the chain's `Slashing.strikeRules`; these defaults are its deployment values)."""

    severities: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))
    ban_points: int = 12
    ban_validators: int = 2
    window_epochs: int = 7

    def __post_init__(self) -> None:
        if set(self.severities) != set(STRIKE_REASONS):
            raise ValueError(f"severities must name every strike reason: {sorted(STRIKE_REASONS)}")
        if self.ban_points < 1 or self.ban_validators < 1 or self.window_epochs < 1:
            raise ValueError("ban_points, ban_validators and window_epochs must be at least 1")

    @classmethod
    def from_chain(cls, strike_rules: tuple) -> BanRules:
        """The rules from `Slashing.strikeRules()`'s answer (reasons, severities, points, validators,
        window, and the awards, which are not a ban's business)."""
        reasons, severities, ban_points, ban_validators, window_epochs = strike_rules[:5]
        return cls(dict(zip(reasons, severities, strict=True)), ban_points, ban_validators, window_epochs)

    def in_window(self, strike_epoch: int, epoch: int) -> bool:
        """Whether a strike of `strike_epoch` still counts at `epoch`."""
        return epoch - self.window_epochs < strike_epoch <= epoch


def canonical_order(strikes: Sequence[StrikeReport]) -> list[StrikeReport]:
    """Strikes by epoch, then signature: the order every validator gives the same strikes, whatever order
    it heard them in, so that their notices have one evidence hash and one first striker (the reporter).
    In the order each heard them, validators that heard them differently each signed their own decision;
    a notice in another order (a publisher picking its reporter) is refused."""
    return sorted(strikes, key=lambda strike: (strike.epoch, strike.signature))


def ban_shortfall(
    notice: BanNotice,
    rules: BanRules,
    is_validator: IsValidator,
    signer_of: Callable[[StrikeReport], bytes],
    reason_of: Callable[[StrikeReport], str | None] = lambda strike: strike.reason,
) -> str | None:
    """Why `notice`'s strikes do not justify its ban under `rules`, or None when they do (module docstring).
    `signer_of` is a strike's verified signer; `reason_of` the reason it counts for (None: not counted)."""
    if list(notice.strikes) != canonical_order(notice.strikes):
        return "its strikes are not in their canonical order (by epoch, then signature)"
    best: dict[bytes, int] = {}
    for strike in notice.strikes:
        signer = signer_of(strike)
        if signer != strike.validator or not is_validator(signer):
            continue
        if not rules.in_window(strike.epoch, notice.epoch):
            continue
        reason = reason_of(strike)
        if reason is None:
            continue
        best[signer] = max(best.get(signer, 0), rules.severities[reason])
    points = sum(best.values())
    if len(best) < rules.ban_validators:
        return f"strikes from {len(best)} validators count, a ban needs {rules.ban_validators}"
    if points < rules.ban_points:
        return f"the counted strikes weigh {points} points, a ban needs {rules.ban_points}"
    return None


def ban_validator(
    domain: TypedDomain,
    is_validator: IsValidator,
    rules: Callable[[], BanRules] = BanRules,
    *,
    on_accept: Callable[[envelope.Signed[BanNotice]], None] | None = None,
    on_refuse: Callable[[envelope.Signed[BanNotice], str], None] | None = None,
) -> Validator:
    """The validator of BANS_TOPIC: a ban passes only when its strikes, signed under `domain` (the strike
    reports' EIP-712 domain), justify it under the current `rules()`. `on_accept` records each accepted
    ban; `on_refuse` hears of each well-signed notice whose strikes do not add up, with the shortfall."""

    def authorise(signed: envelope.Signed[BanNotice]) -> bool:
        shortfall = ban_shortfall(signed.message, rules(), is_validator, lambda s: eth_signer(s, domain))
        if shortfall is not None and on_refuse is not None:
            on_refuse(signed, shortfall)
        return shortfall is None

    return signed_message_validator(BanNotice, authorise=authorise, on_accept=on_accept)


class BanList:
    """Banned node keys, from accepted ban notices; `validate` is the topic validator to subscribe with."""

    def __init__(
        self, domain: TypedDomain, is_validator: IsValidator, rules: Callable[[], BanRules] = BanRules
    ) -> None:
        self._until_ms: dict[bytes, int] = {}
        self.refused = 0  # well-signed notices whose strikes did not justify a ban
        self.validate = ban_validator(
            domain, is_validator, rules, on_accept=self._record, on_refuse=self._count_refusal
        )

    def _count_refusal(self, signed: envelope.Signed[BanNotice], shortfall: str) -> None:
        self.refused += 1
        log.info("refused a ban of node %s: %s", signed.message.node_key.hex()[:16], shortfall)

    def _record(self, signed: envelope.Signed[BanNotice]) -> None:
        node_key = signed.message.node_key
        self._until_ms[node_key] = max(self._until_ms.get(node_key, 0), signed.expires_at_ms)

    def banned(self, node_key: bytes, now_ms: int | None = None) -> bool:
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        until = self._until_ms.get(node_key)
        if until is not None and until <= now_ms:
            del self._until_ms[node_key]
            return False
        return until is not None

    def __len__(self) -> int:
        return len(self._until_ms)
