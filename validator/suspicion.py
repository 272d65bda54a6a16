"""How suspicious each node is, and how often to sample it: a Bayesian "probability this node cheats".

Each node starts at the prior. Every checked answer multiplies its odds by the check's likelihood ratio:
a failure by detection / false_positive (how much likelier a failure is from a cheat than from an honest
node), a pass by (1 - detection) / (1 - false_positive). A user's report multiplies them by
`report_factor`. The probability is kept within [floor, ceiling] so that a long honest record never
makes a node unwatchable, nor one failure unforgivable.

The sampling rate rises with suspicion, from `base_per_hour` for a node believed honest to `max_per_hour`
for one believed to cheat; challenge times are drawn from an exponential distribution at that rate (a
Poisson process), so a node cannot tell when the next one comes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = ["Suspicion", "SuspicionModel"]


@dataclass(frozen=True)
class SuspicionModel:
    """The model's parameters (documented defaults; `ValidatorConfig` sets them)."""

    prior: float = 0.02
    detection: float = 0.5  # chance that one check of a cheating node fails (conservative: subtle cheats)
    false_positive: float = 0.01  # chance that one check of an honest node fails
    report_factor: float = 3.0
    floor: float = 0.001
    ceiling: float = 0.999
    base_per_hour: float = 6.0
    max_per_hour: float = 120.0

    def __post_init__(self) -> None:
        for name in ("prior", "detection", "false_positive", "floor", "ceiling"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie strictly between 0 and 1")
        if not self.floor <= self.prior <= self.ceiling:
            raise ValueError("need floor <= prior <= ceiling")
        if self.detection <= self.false_positive:
            raise ValueError("a check must fail more often for cheats than for honest nodes")
        if not 0 < self.base_per_hour <= self.max_per_hour or self.report_factor < 1:
            raise ValueError("need 0 < base_per_hour <= max_per_hour and report_factor >= 1")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@dataclass
class Suspicion:
    """One node's suspicion under `model`; `probability` is what NodeStanding publishes."""

    model: SuspicionModel = field(default_factory=SuspicionModel)
    log_odds: float | None = None
    checks: int = 0
    failures: int = 0
    reports: int = 0

    def __post_init__(self) -> None:
        if self.log_odds is None:
            self.log_odds = _logit(self.model.prior)

    @property
    def probability(self) -> float:
        assert self.log_odds is not None
        return 1 / (1 + math.exp(-self.log_odds))

    def _move(self, factor: float) -> None:
        assert self.log_odds is not None
        low, high = _logit(self.model.floor), _logit(self.model.ceiling)
        self.log_odds = min(high, max(low, self.log_odds + math.log(factor)))

    def checked(self, passed: bool) -> None:
        """Take one check's outcome."""
        model = self.model
        self.checks += 1
        if passed:
            self._move((1 - model.detection) / (1 - model.false_positive))
        else:
            self.failures += 1
            self._move(model.detection / model.false_positive)

    def reported(self) -> None:
        """Take a user's report about this node."""
        self.reports += 1
        self._move(self.model.report_factor)

    def per_hour(self) -> float:
        model = self.model
        return model.base_per_hour + (model.max_per_hour - model.base_per_hour) * self.probability

    def next_delay(self, rng: random.Random) -> float:
        """Seconds until this node's next challenge, drawn at the current rate."""
        return rng.expovariate(self.per_hour() / 3600)
