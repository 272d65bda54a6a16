"""The reward boost engine of docs/rewards.md: pay an epoch under its frozen snapshot, then close it.

Every settler must get the same bits from the same inputs, so all arithmetic is on integers and exact
rationals, as the spec fixes it. The only irrational step, `rel ** alpha`, is done in `decimal` at
precision 50 exactly as the spec writes it; a float computation is used first only to find which tier an
account falls in when that float is provably far from a tier boundary (see `_TierFunction`).

The hot path avoids `Fraction`: weeks bonded `w = S / D` is compared by integer cross-multiplication,
competitive excesses are kept as (numerator, denominator) pairs, and the few distinct multipliers of an
epoch are built once. One close of a million accounts holds each account's inputs, its result and, for
the competitive set only, one small tuple.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction

from chain.errors import RewardsInputError
from chain.rewards.params import BPS, UINT256_MAX, RewardParams

ONE = Fraction(1)

# The float pre-check of a tier must land at least this far (times K - 1) from an integer to be trusted;
# its relative error is below 1e-12 (see _TierFunction), so the margin is a thousandfold.
_TIER_MARGIN = 1e-9
# Below this a float ratio may be subnormal and lose relative precision; such accounts go to decimal.
_TINY = 1e-200


@dataclass(frozen=True, slots=True)
class AccountState:
    """What an account carries from epoch to epoch. The default is a new account."""

    smoothed: int = 0
    """E: smoothed weekly earnings, wei."""
    lifetime: int = 0
    """Lifetime base earnings, wei."""
    history: tuple[int, ...] = ()
    """The last n_week closed-epoch base rewards, oldest first."""
    closed_epochs: int = 0
    validator: bool = False
    """Validator eligibility of the current snapshot (drives the hysteresis)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The frozen per-account values reward workers read during an epoch."""

    multiplier: Fraction
    """B, in [1, max_multiplier]."""
    denominator: int
    """D: the weekly earnings denominator, wei."""
    boost_eligible: bool = False
    validator_eligible: bool = False


@dataclass(frozen=True, slots=True)
class EpochInput:
    """What the settler observed for an account over the epoch being closed."""

    base_reward: int
    """r: base reward earned this epoch, wei, after finalized reversals."""
    registered: bool
    suspended: bool
    active_bond: int
    """S: active bond at the snapshot, wei; pending unbonds do not count."""


@dataclass(frozen=True, slots=True)
class AccountEpoch:
    """One account's input to an epoch close. A new account has the default state and no snapshot."""

    input: EpochInput
    state: AccountState = AccountState()
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class AccountClose:
    """One account's result: its new state and snapshot, and the reward paid for the closed epoch."""

    state: AccountState
    snapshot: Snapshot
    reward: int
    tier: int | None = None
    """s, the competitive tier in [0, K-1], for members of an enabled competition; None otherwise."""


@dataclass(frozen=True, slots=True)
class Competition:
    """The competitive set O of an epoch close (spec steps 9-10), for reports and plots."""

    size: int
    """N = |O|."""
    total_earnings: int
    """Sum of smoothed weekly earnings E over O."""
    enabled: bool
    tiers: int = 0
    """K, when enabled."""
    low: Fraction | None = None
    """L, the smallest excess in O, when enabled."""
    high: Fraction | None = None
    """H, the nearest-rank percentile of the excesses in O, when enabled."""


@dataclass(frozen=True, slots=True)
class EpochClose:
    """The result of closing an epoch: each account's result, in input order, and the competition."""

    accounts: dict[str, AccountClose]
    competition: Competition


def default_snapshot(params: RewardParams) -> Snapshot:
    """The snapshot of an account that has none yet: B = 1, D = earnings_floor, both flags false."""
    return Snapshot(ONE, params.earnings_floor)


def pay_epoch(base_reward: int, snapshot: Snapshot, params: RewardParams) -> int:
    """Reward paid for `base_reward` earned under `snapshot` (spec, "Paying an epoch")."""
    cap = params.boost_cap_bps * snapshot.denominator // (BPS * params.n_week)
    boostable = min(base_reward, cap)
    multiplier = snapshot.multiplier
    return base_reward + (multiplier.numerator - multiplier.denominator) * boostable // multiplier.denominator


def close_epoch(accounts: Mapping[str, AccountEpoch], params: RewardParams) -> EpochClose:
    """Close an epoch for every account (spec, "Closing epoch t") and pay it under the input snapshots.

    The result does not depend on the order of `accounts`. Raises RewardsInputError naming the account
    and field for an input that is not well-formed (wrong type, negative amount, multiplier below 1).
    """
    with collector_paused():
        return _close_epoch(accounts, params)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of small objects.

    A close (and the exchange codec) allocates several container objects per account and none of them
    form cycles, yet the collector would rescan them over and over: about a third of the CPU time at 100k
    accounts. Reference counting still frees everything; the collector resumes as it was afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _close_epoch(accounts: Mapping[str, AccountEpoch], params: RewardParams) -> EpochClose:
    n_week = params.n_week
    floor = params.earnings_floor
    full_weeks = params.full_weeks
    base_bps = params.base_boost_bps
    max_bps = params.max_multiplier_bps
    cap_div = BPS * n_week
    no_snapshot = default_snapshot(params)
    full_base = _multiplier(BPS + base_bps, BPS, max_bps)

    # One slot per account in input order; competitors' slots are filled once L, H and K are known.
    results: list[AccountClose | None] = []
    # Competitive candidates (spec step 9): (result index, new state, reward, S, D, E, validator).
    candidates: list[tuple[int, AccountState, int, int, int, int, bool]] = []
    for index, (account_id, entry) in enumerate(accounts.items()):
        check_account(account_id, entry)
        state = entry.state
        observed = entry.input
        r = observed.base_reward
        snapshot = entry.snapshot or no_snapshot

        # Paying the epoch under the input snapshot.
        cap = params.boost_cap_bps * snapshot.denominator // cap_div
        multiplier = snapshot.multiplier
        m_den = multiplier.denominator
        reward = r + (multiplier.numerator - m_den) * (r if r < cap else cap) // m_den

        # Steps 1-3: history, observed weekly earnings, asymmetric smoothing.
        lifetime = state.lifetime + r
        history = (*state.history, r)
        if len(history) > n_week:
            history = history[-n_week:]
        closed_epochs = state.closed_epochs + 1
        observed_weekly = n_week * sum(history) // len(history)
        smoothed = state.smoothed
        gain = params.lambda_up_bps if observed_weekly >= smoothed else params.lambda_down_bps
        smoothed += (observed_weekly - smoothed) * gain // BPS

        # Steps 4-6. Weeks bonded w = S / D is compared as S >= weeks * D, never divided.
        eligible = (
            observed.registered
            and not observed.suspended
            and closed_epochs >= params.min_history_epochs
            and lifetime >= params.min_lifetime
        )
        denominator = smoothed if smoothed > floor else floor
        bond = observed.active_bond
        threshold = params.validator_exit_weeks if state.validator else params.validator_enter_weeks
        validator = eligible and bond >= params.validator_min_bond and bond >= threshold * denominator
        new_state = AccountState(smoothed, lifetime, history, closed_epochs, validator)

        full_bond = full_weeks * denominator
        if not eligible:
            results.append(AccountClose(new_state, Snapshot(ONE, denominator, False, validator), reward))
        elif bond > full_bond and smoothed >= params.comp_min_account_earnings:
            # In O (excess > 0); its multiplier waits for the competition's order statistics.
            results.append(None)
            candidates.append((index, new_state, reward, bond, denominator, smoothed, validator))
        else:
            # Steps 7, 11 without competition: B = 1 + base_boost * min(1, w / full_weeks), capped.
            if bond >= full_bond:
                boosted = full_base
            else:
                boosted = _multiplier(BPS * full_bond + base_bps * bond, BPS * full_bond, max_bps)
            results.append(AccountClose(new_state, Snapshot(boosted, denominator, True, validator), reward))

    competition = _settle_competition(candidates, results, params, full_base)
    return EpochClose(dict(zip(accounts, results, strict=True)), competition)  # type: ignore[arg-type]  # all filled


def _settle_competition(
    candidates: list[tuple[int, AccountState, int, int, int, int, bool]],
    results: list[AccountClose | None],
    params: RewardParams,
    full_base: Fraction,
) -> Competition:
    """Steps 9-11 for the competitive set O: fill in its members' results and describe the competition."""
    size = len(candidates)
    total = sum(candidate[5] for candidate in candidates)
    enabled = size >= params.comp_min_accounts and total >= params.comp_min_total_earnings
    if not enabled:
        for index, state, reward, _bond, denominator, _smoothed, validator in candidates:
            results[index] = AccountClose(state, Snapshot(full_base, denominator, True, validator), reward)
        return Competition(size, total, False)

    full_weeks = params.full_weeks
    # excess = max(0, w - full_weeks) = (S - full_weeks * D) / D, held as a (numerator, denominator) pair.
    excesses = [
        (bond - full_weeks * denominator, denominator) for _, _, _, bond, denominator, _, _ in candidates
    ]
    low = _order_statistic(excesses, 0)
    rank = -(-params.percentile * size // 100)  # ceil(percentile * N / 100), in integers
    high = _order_statistic(excesses, rank - 1)
    kappa = params.kappa
    tiers = min(
        max(math.isqrt(kappa.numerator**2 * size // kappa.denominator**2), params.tiers_min), params.tiers_max
    )

    steps = tiers - 1
    base_bps = params.base_boost_bps
    # B for tier s (spec steps 10-11; members of O have w > full_weeks, so their base boost is full).
    by_tier = [
        _multiplier(
            (BPS + base_bps) * steps + s * params.comp_boost_bps, BPS * steps, params.max_multiplier_bps
        )
        for s in range(tiers)
    ]
    tier_of = _TierFunction(low, high, params)
    for (index, state, reward, _bond, denominator, _smoothed, validator), excess in zip(
        candidates, excesses, strict=True
    ):
        tier = tier_of(excess, steps)
        results[index] = AccountClose(
            state, Snapshot(by_tier[tier], denominator, True, validator), reward, tier
        )
    return Competition(size, total, True, tiers, Fraction(*low), Fraction(*high))


def _order_statistic(ratios: list[tuple[int, int]], rank: int) -> tuple[int, int]:
    """The `rank`-th smallest (0-based) of positive-denominator ratios, exactly.

    Sorting a million Fractions is slow, so the ratios are sorted by their floats first: int / int is
    correctly rounded in CPython and rounding is monotonic, so floats that differ order their ratios the
    same way, and only the ratios sharing the float at `rank` need an exact comparison.
    """
    approximations = [numerator / denominator for numerator, denominator in ratios]
    ordered = sorted(approximations)
    value = ordered[rank]
    first = bisect.bisect_left(ordered, value)
    tied = sorted(
        (
            ratio
            for ratio, approximation in zip(ratios, approximations, strict=True)
            if approximation == value
        ),
        key=lambda ratio: Fraction(*ratio),
    )
    return tied[rank - first]


class _TierFunction:
    """s = floor(q * (K - 1)) of spec step 10 for one epoch's L and H."""

    def __init__(self, low: tuple[int, int], high: tuple[int, int], params: RewardParams) -> None:
        self.low_num, self.low_den = low
        self.high_num, self.high_den = high
        # H - L = spread / (high_den * low_den); H <= L makes every rel 0.
        self.spread = self.high_num * self.low_den - self.low_num * self.high_den
        self.comp_weeks = params.comp_weeks
        self.alpha = params.alpha_decimal
        self.alpha_float = float(self.alpha)

    def __call__(self, excess: tuple[int, int], steps: int) -> int:
        numerator, denominator = excess
        # abs = min(1, excess / comp_weeks) = abs_num / abs_den.
        abs_num, abs_den = numerator, denominator * self.comp_weeks
        if abs_num >= abs_den:
            abs_num = abs_den = 1
        if self.spread <= 0:
            return 0  # rel = 0, so soft = 0 and q = 0
        # d = min(excess, H); rel = (d - L) / (H - L), as one integer ratio.
        if numerator * self.high_den >= self.high_num * denominator:
            rel_num = rel_den = 1
        else:
            rel_num = (numerator * self.low_den - self.low_num * denominator) * self.high_den
            rel_den = denominator * self.spread
        if rel_num == 0:
            return 0
        # The spec's q is a 50-digit decimal. A float q carries a relative error below 1e-12 (correctly
        # rounded divisions and products, pow within an ulp, and alpha rounded to a float, which moves
        # rel ** alpha by at most |ln rel| * alpha * 2**-53 < 461 * 10 * 1.2e-16 for rel > 1e-200 and
        # alpha <= 10), while the decimal q is within 1e-48 of the true value. So when q_float * (K - 1)
        # is further than 1e-9 * (K - 1) from an integer, both floor to the same tier. Results that
        # underflow land near 0 and take the decimal path.
        rel_float = rel_num / rel_den
        abs_float = abs_num / abs_den
        if rel_float > _TINY and abs_float > _TINY:
            scaled = rel_float**self.alpha_float * abs_float * steps
            tier = math.floor(scaled)
            margin = _TIER_MARGIN * steps
            if scaled - tier > margin and tier + 1 - scaled > margin:
                return tier
        return _tier_exactly(rel_num, rel_den, abs_num, abs_den, self.alpha, steps)


_SPEC_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN)


def _tier_exactly(rel_num: int, rel_den: int, abs_num: int, abs_den: int, alpha: Decimal, steps: int) -> int:
    """The tier as docs/rewards.md "Units and arithmetic" writes it, then floor(q * (K - 1)) exactly.

    Decimal division is correctly rounded, so rel need not be in lowest terms to give the same digits.
    A fresh context, not the caller's, so a changed global rounding mode cannot change the result.
    """
    with localcontext(_SPEC_CONTEXT):
        rel = Decimal(rel_num) / Decimal(rel_den)
        soft = Decimal(0) if rel == 0 else rel**alpha
        q = soft * (Decimal(abs_num) / Decimal(abs_den))
        q = min(max(q, Decimal(0)), Decimal(1))
    numerator, denominator = q.as_integer_ratio()
    return numerator * steps // denominator


def _multiplier(numerator: int, denominator: int, max_bps: int) -> Fraction:
    """min(max_multiplier_bps / 10000, numerator / denominator), in lowest terms."""
    if numerator * BPS > max_bps * denominator:
        return Fraction(max_bps, BPS)
    return Fraction(numerator, denominator)


_Fail = Callable[[str, str, object], None]


def check_account(account_id: str, entry: AccountEpoch) -> None:
    """Raise RewardsInputError naming the account and field if `entry` is not a well-formed input."""
    if _well_formed(entry):
        return

    def fail(field: str, requirement: str, value: object) -> None:
        raise RewardsInputError(f"account {account_id!r}: {field} {requirement}, got {value!r}")

    if type(entry) is not AccountEpoch:
        fail("entry", "must be an AccountEpoch", entry)
    observed, state, snapshot = entry.input, entry.state, entry.snapshot
    if type(observed) is not EpochInput:
        fail("input", "must be an EpochInput", observed)
    _check_amount(fail, "input.base_reward", observed.base_reward)
    _check_amount(fail, "input.active_bond", observed.active_bond)
    _check_flags(fail, "input", observed, ("registered", "suspended"))
    if type(state) is not AccountState:
        fail("state", "must be an AccountState", state)
    _check_amount(fail, "state.smoothed", state.smoothed)
    _check_amount(fail, "state.lifetime", state.lifetime)
    _check_amount(fail, "state.closed_epochs", state.closed_epochs)
    _check_flags(fail, "state", state, ("validator",))
    if type(state.history) is not tuple:
        fail("state.history", "must be a tuple", state.history)
    for position, amount in enumerate(state.history):
        _check_amount(fail, f"state.history[{position}]", amount)
    if snapshot is not None:
        if type(snapshot) is not Snapshot:
            fail("snapshot", "must be a Snapshot or None", snapshot)
        _check_amount(fail, "snapshot.denominator", snapshot.denominator)
        if type(snapshot.multiplier) is not Fraction or snapshot.multiplier < 1:
            fail("snapshot.multiplier", "must be a Fraction of at least 1", snapshot.multiplier)
        _check_flags(fail, "snapshot", snapshot, ("boost_eligible", "validator_eligible"))


def _well_formed(entry: AccountEpoch) -> bool:
    # One flat expression on the path every account takes: the diagnosis above runs only on failure.
    if type(entry) is not AccountEpoch:
        return False
    observed, state, snapshot = entry.input, entry.state, entry.snapshot
    if not (
        type(observed) is EpochInput
        and type(observed.base_reward) is int
        and 0 <= observed.base_reward <= UINT256_MAX
        and type(observed.active_bond) is int
        and 0 <= observed.active_bond <= UINT256_MAX
        and type(observed.registered) is bool
        and type(observed.suspended) is bool
        and type(state) is AccountState
        and type(state.smoothed) is int
        and 0 <= state.smoothed <= UINT256_MAX
        and type(state.lifetime) is int
        and 0 <= state.lifetime <= UINT256_MAX
        and type(state.closed_epochs) is int
        and 0 <= state.closed_epochs <= UINT256_MAX
        and type(state.validator) is bool
        and type(state.history) is tuple
    ):
        return False
    for amount in state.history:
        if type(amount) is not int or not 0 <= amount <= UINT256_MAX:
            return False
    if snapshot is None:
        return True
    multiplier = snapshot.multiplier
    return (
        type(snapshot) is Snapshot
        and type(multiplier) is Fraction
        and multiplier.numerator >= multiplier.denominator  # B >= 1; a Fraction's denominator is positive
        and type(snapshot.denominator) is int
        and 0 <= snapshot.denominator <= UINT256_MAX
        and type(snapshot.boost_eligible) is bool
        and type(snapshot.validator_eligible) is bool
    )


def _check_amount(fail: _Fail, field: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= UINT256_MAX:
        fail(field, "must be an integer within [0, 2**256-1]", value)


def _check_flags(fail: _Fail, prefix: str, record: object, names: Iterable[str]) -> None:
    for name in names:
        value = getattr(record, name)
        if type(value) is not bool:
            fail(f"{prefix}.{name}", "must be a boolean", value)
