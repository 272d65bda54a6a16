"""Governance parameters of the reward boost engine (docs/rewards.md, "Parameters"), with their bounds.

Every settler must run an epoch close with the same parameters, so a bad value is refused here, with the
parameter's name, rather than silently producing different bits later.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from chain.errors import RewardsParamsError

POD = 10**18
"""One POD in wei."""

HOURS_PER_WEEK = 168
BPS = 10_000
UINT256_MAX = 2**256 - 1

# Parameters that are amounts of wei travel as decimal strings in the exchange format; alpha and
# tiers_kappa are strings (a decimal and a rational); every other parameter is a JSON integer.
AMOUNT_PARAMS = frozenset(
    {
        "min_lifetime",
        "earnings_floor",
        "validator_min_bond",
        "comp_min_account_earnings",
        "comp_min_total_earnings",
        "epoch_emission_cap",
    }
)
STRING_PARAMS = frozenset({"alpha", "tiers_kappa"})

# Bounded so that the float pre-check of the competitive tier (engine._TierFunction) keeps its error
# far below its safety margin; the whitepaper's value is 0.75.
MAX_ALPHA = Decimal(10)

# Canonical decimal strings; amounts have at most 78 digits (uint256 fits), alpha and kappa 100 characters.
_INTEGER_TEXT = re.compile(r"0|[1-9][0-9]{0,77}")
_DECIMAL_TEXT = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_RATIONAL_TEXT = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+|/[1-9][0-9]*)?")


@dataclass(frozen=True, slots=True)
class RewardParams:
    """The engine's parameters; the defaults are the spec's. Construction checks types and bounds."""

    epoch_hours: int = 24
    lambda_up_bps: int = 5000
    lambda_down_bps: int = 1000
    min_history_epochs: int = 7
    min_lifetime: int = 50 * POD
    earnings_floor: int = 1 * POD
    boost_cap_bps: int = 30000
    full_weeks: int = 13
    validator_enter_weeks: int = 13
    validator_exit_weeks: int = 10
    validator_min_bond: int = 100_000 * POD
    comp_weeks: int = 13
    percentile: int = 95
    alpha: str = "0.75"
    comp_min_accounts: int = 10
    comp_min_account_earnings: int = 10 * POD
    comp_min_total_earnings: int = 1000 * POD
    tiers_kappa: str = "1"
    tiers_min: int = 3
    tiers_max: int = 11
    base_boost_bps: int = 2000
    comp_boost_bps: int = 1000
    max_multiplier_bps: int = 13000
    emission_revenue_bps: int = 5000
    """Base rewards of an epoch are at most this share of its paid revenue, valued in POD (docs/rewards.md,
    "Base rewards")."""
    epoch_emission_cap: int = 500_000 * POD
    """And never more than this many wei of POD in one epoch."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in STRING_PARAMS:
                if not isinstance(value, str) or len(value) > 100:
                    raise RewardsParamsError(
                        f"parameter {field.name!r} must be a string of at most 100 characters, got {value!r}"
                    )
            elif not isinstance(value, int) or isinstance(value, bool):
                raise RewardsParamsError(f"parameter {field.name!r} must be an integer, got {value!r}")
            elif not 0 <= value <= UINT256_MAX:
                raise RewardsParamsError(
                    f"parameter {field.name!r} must be within [0, 2**256-1], got {value}"
                )
        self._check(
            1 <= self.epoch_hours <= HOURS_PER_WEEK and HOURS_PER_WEEK % self.epoch_hours == 0,
            "epoch_hours",
            "must divide 168",
        )
        self._check(self.lambda_up_bps <= BPS, "lambda_up_bps", "must be at most 10000")
        self._check(self.lambda_down_bps <= BPS, "lambda_down_bps", "must be at most 10000")
        self._check(self.earnings_floor >= 1, "earnings_floor", "must be at least 1 wei (it divides)")
        self._check(self.full_weeks >= 1, "full_weeks", "must be at least 1 (it divides)")
        self._check(self.comp_weeks >= 1, "comp_weeks", "must be at least 1 (it divides)")
        self._check(
            self.validator_exit_weeks <= self.validator_enter_weeks,
            "validator_exit_weeks",
            f"must not exceed validator_enter_weeks ({self.validator_enter_weeks}), or hysteresis inverts",
        )
        self._check(1 <= self.percentile <= 100, "percentile", "must be within [1, 100]")
        self._check(self.comp_min_accounts >= 1, "comp_min_accounts", "must be at least 1")
        self._check(self.tiers_min >= 2, "tiers_min", "must be at least 2 (tiers divide by K - 1)")
        self._check(
            self.tiers_max >= self.tiers_min, "tiers_max", f"must be at least tiers_min ({self.tiers_min})"
        )
        self._check(self.max_multiplier_bps >= BPS, "max_multiplier_bps", "must be at least 10000 (B >= 1)")
        self._check(
            _DECIMAL_TEXT.fullmatch(self.alpha) is not None and 0 < Decimal(self.alpha) <= MAX_ALPHA,
            "alpha",
            f"must be a decimal string in (0, {MAX_ALPHA}], like '0.75'",
        )
        self._check(
            _RATIONAL_TEXT.fullmatch(self.tiers_kappa) is not None and Fraction(self.tiers_kappa) > 0,
            "tiers_kappa",
            "must be a positive rational string, like '1', '3/2' or '1.5'",
        )

    def _check(self, ok: bool, name: str, requirement: str) -> None:
        if not ok:
            raise RewardsParamsError(f"parameter {name!r} {requirement}, got {getattr(self, name)!r}")

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, object]) -> RewardParams:
        """The defaults with `overrides` applied, as the exchange format writes them (amounts as strings).

        Raises RewardsParamsError naming the parameter for an unknown name, a wrong type or a bound.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, raw in overrides.items():
            if name not in known:
                raise RewardsParamsError(f"unknown parameter {name!r}; known parameters: {sorted(known)}")
            if name in AMOUNT_PARAMS:
                if not isinstance(raw, str) or _INTEGER_TEXT.fullmatch(raw) is None:
                    raise RewardsParamsError(
                        f"parameter {name!r} is an amount: a decimal string of wei, got {raw!r}"
                    )
                values[name] = int(raw)
            else:
                values[name] = raw
        return cls(**values)

    def overrides(self) -> dict[str, object]:
        """The parameters that differ from the defaults, as exchange-format overrides (see from_overrides)."""
        default = RewardParams()
        return {
            field.name: str(value) if field.name in AMOUNT_PARAMS else value
            for field in dataclasses.fields(self)
            if (value := getattr(self, field.name)) != getattr(default, field.name)
        }

    @property
    def n_week(self) -> int:
        """Epochs per week."""
        return HOURS_PER_WEEK // self.epoch_hours

    @property
    def alpha_decimal(self) -> Decimal:
        return Decimal(self.alpha)

    @property
    def kappa(self) -> Fraction:
        return Fraction(self.tiers_kappa)
