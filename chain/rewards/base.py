"""Base rewards (docs/rewards.md, "Base rewards"): how much an epoch emits, and how it is split.

An epoch emits at most `emission_revenue_bps` of the revenue paid for registered nodes' work, valued in POD,
and never more than `epoch_emission_cap`; operators share it in proportion to what was paid for their
nodes' work. Pure integer arithmetic, the same on every settler.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from chain.rewards.params import BPS, RewardParams

__all__ = ["PER_MILLION", "base_rewards", "emission"]

PER_MILLION = 1_000_000
"""Prices are per million tokens, so paid work is counted in millionths of the payment token's unit."""


def emission(paid_work: int, pod_per_unit: Fraction, params: RewardParams) -> int:
    """POD wei an epoch emits for `paid_work` (millionths of the payment token's smallest unit, paid for
    registered nodes' work) at `pod_per_unit` (POD wei per smallest unit of the payment token)."""
    earned = paid_work * pod_per_unit.numerator * params.emission_revenue_bps
    return min(params.epoch_emission_cap, earned // (pod_per_unit.denominator * BPS * PER_MILLION))


def base_rewards(work: Mapping[str, int], total: int) -> dict[str, int]:
    """`total` wei split pro rata to `work`, rounded down (the remainder stays in the pool)."""
    weight = sum(work.values())
    if weight == 0:
        return {}
    return {account: total * amount // weight for account, amount in sorted(work.items())}
