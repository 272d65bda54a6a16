"""The reward boost engine: hand-computed spec steps, properties, and agreement with a naive reading."""

import random
import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.errors import RewardsInputError
from chain.rewards import (
    POD,
    AccountEpoch,
    AccountState,
    EpochInput,
    RewardParams,
    Snapshot,
    close_epoch,
    encode_result,
    pay_epoch,
)
from chain.rewards.engine import _order_statistic, _tier_exactly, _TierFunction
from chain.rewards.simulate import synthetic_epoch
from tests.bench.bench_rewards import digest, naive_close_epoch
from tests.examples import examples

pytestmark = pytest.mark.unit

DEFAULTS = RewardParams()
WEEKLY = 70 * POD  # a steady operator earning 10 POD a day


def steady(
    bond: int, *, weekly: int = WEEKLY, validator: bool = False, registered: bool = True
) -> AccountEpoch:
    """An established account whose smoothed earnings stay at `weekly` through the close (E_obs == E)."""
    daily = weekly // 7
    state = AccountState(weekly, 100 * POD + 7 * daily, (daily,) * 6, 9, validator)
    return AccountEpoch(EpochInput(daily, registered, False, bond), state, Snapshot(Fraction(1), weekly))


def weeks(count: Fraction | int, weekly: int = WEEKLY) -> int:
    """A bond of `count` weeks of `weekly` earnings, in wei."""
    return int(Fraction(count) * weekly)


def competition_of(excess_weeks: list[Fraction | int], params: RewardParams = DEFAULTS):
    accounts = {f"a{i:03d}": steady(weeks(DEFAULTS.full_weeks + x)) for i, x in enumerate(excess_weeks)}
    return close_epoch(accounts, params)


# -- hand-computed spec steps --------------------------------------------------------------------------------


def test_pay_epoch_boosts_only_up_to_the_cap():
    snapshot = Snapshot(Fraction(6, 5), WEEKLY)
    # cap = 30000 * 70 POD // (10000 * 7) = 30 POD; 50 POD earned: 50 + (1/5) * 30 = 56 POD.
    assert pay_epoch(50 * POD, snapshot, DEFAULTS) == 56 * POD
    # Under the cap the whole reward is boosted: 20 + 4.
    assert pay_epoch(20 * POD, snapshot, DEFAULTS) == 24 * POD
    # floor((B - 1) * boostable): 1/5 of 7 wei is 1.4 -> 1.
    assert pay_epoch(7, snapshot, DEFAULTS) == 8


def test_smoothing_rises_fast_and_falls_slowly_with_floor_division():
    up = AccountEpoch(EpochInput(10, True, False, 0), AccountState(0, 0, (), 0, False))
    # E_obs = 7 * 10 // 1 = 70; rising gain 5000: 0 + 70 * 5000 // 10000 = 35.
    assert close_epoch({"a": up}, DEFAULTS).accounts["a"].state.smoothed == 35
    down = AccountEpoch(EpochInput(10, True, False, 0), AccountState(1001, 0, (10,) * 6, 6, False))
    # E_obs = 70 < 1001; falling gain 1000: (70 - 1001) * 1000 // 10000 = floor(-93.1) = -94 -> 907.
    assert close_epoch({"a": down}, DEFAULTS).accounts["a"].state.smoothed == 907


def test_history_keeps_the_last_week_and_denominator_has_a_floor():
    entry = AccountEpoch(EpochInput(8, True, False, 0), AccountState(0, 0, tuple(range(1, 8)), 7, False))
    close = close_epoch({"a": entry}, DEFAULTS).accounts["a"]
    assert close.state.history == (2, 3, 4, 5, 6, 7, 8)
    assert close.state.closed_epochs == 8
    assert close.state.lifetime == 8
    # E = 0 + (7 * 35 // 7) * 5000 // 10000 = 17 wei, far below the 1 POD floor.
    assert close.state.smoothed == 17 and close.snapshot.denominator == POD


def test_new_account_is_paid_unboosted_and_not_eligible():
    entry = AccountEpoch(EpochInput(3 * POD, True, False, 10**6 * POD))
    close = close_epoch({"new": entry}, DEFAULTS).accounts["new"]
    assert close.reward == 3 * POD
    assert close.snapshot == Snapshot(Fraction(1), Fraction(21, 2) * POD, False, False)


@pytest.mark.parametrize(
    ("registered", "suspended", "closed", "lifetime", "eligible"),
    [
        (True, False, 6, 1000 * POD, True),  # closes its 7th epoch now
        (True, False, 5, 1000 * POD, False),
        (True, False, 9, 40 * POD, True),  # 40 + 10 = 50 POD reaches min_lifetime
        (True, False, 9, 40 * POD - 1, False),
        (False, False, 9, 1000 * POD, False),
        (True, True, 9, 1000 * POD, False),
    ],
)
def test_boost_eligibility(registered, suspended, closed, lifetime, eligible):
    state = AccountState(WEEKLY, lifetime, (10 * POD,) * 6, closed, False)
    entry = AccountEpoch(EpochInput(10 * POD, registered, suspended, weeks(13)), state)
    snapshot = close_epoch({"a": entry}, DEFAULTS).accounts["a"].snapshot
    assert snapshot.boost_eligible is eligible
    assert snapshot.multiplier == (Fraction(6, 5) if eligible else 1)


def test_base_boost_is_linear_up_to_full_weeks():
    for bonded, expected in ((0, Fraction(1)), (Fraction(13, 2), Fraction(11, 10)), (13, Fraction(6, 5))):
        close = close_epoch({"a": steady(weeks(bonded))}, DEFAULTS).accounts["a"]
        assert close.snapshot.multiplier == expected
        assert close.tier is None


def test_validator_hysteresis_enters_at_13_weeks_and_stays_until_below_10():
    weekly = 14_000 * POD  # 10 weeks = 140k POD, above the 100k POD minimum bond

    def validator(bond: int, was: bool) -> bool:
        close = close_epoch({"v": steady(bond, weekly=weekly, validator=was)}, DEFAULTS).accounts["v"]
        assert close.state.validator is close.snapshot.validator_eligible
        return close.snapshot.validator_eligible

    assert not validator(weeks(13, weekly) - 1, was=False)
    assert validator(weeks(13, weekly), was=False)
    assert validator(weeks(10, weekly), was=True)
    assert not validator(weeks(10, weekly) - 1, was=True)


def test_validator_needs_the_minimum_bond():
    # 99,999 POD is 1428 weeks of 70 POD a week, but below validator_min_bond.
    close = close_epoch({"v": steady(99_999 * POD, validator=True)}, DEFAULTS).accounts["v"]
    assert not close.snapshot.validator_eligible
    close = close_epoch({"v": steady(100_000 * POD)}, DEFAULTS).accounts["v"]
    assert close.snapshot.validator_eligible


def test_competition_disabled_below_comp_min_accounts():
    nine = competition_of(list(range(1, 10)), RewardParams(comp_min_total_earnings=0))
    assert not nine.competition.enabled and nine.competition.size == 9
    assert {close.snapshot.multiplier for close in nine.accounts.values()} == {Fraction(6, 5)}
    assert all(close.tier is None for close in nine.accounts.values())
    ten = competition_of(list(range(1, 11)), RewardParams(comp_min_total_earnings=0))
    assert ten.competition.enabled and ten.competition.size == 10


def test_competition_disabled_below_total_earnings():
    # 14 accounts of 70 POD a week sum to 980 POD < 1000 POD; 15 sum to 1050 POD.
    assert not competition_of([1] * 14).competition.enabled
    fifteen = competition_of([1] * 15).competition
    assert fifteen.enabled and fifteen.total_earnings == 15 * WEEKLY


def test_accounts_at_full_weeks_or_below_min_earnings_do_not_compete():
    params = RewardParams(comp_min_total_earnings=0, comp_min_accounts=1)
    accounts = {
        "exactly-13": steady(weeks(13)),
        "small": steady(weeks(20, 9 * POD), weekly=9 * POD),  # E = 9 POD < 10 POD
        "competing": steady(weeks(20)),
    }
    result = close_epoch(accounts, params)
    assert result.competition.size == 1
    assert result.accounts["competing"].tier is not None
    assert result.accounts["exactly-13"].tier is None and result.accounts["small"].tier is None


@pytest.mark.parametrize(
    ("size", "kappa", "tiers"),
    [
        (15, "1", 3),
        (16, "1", 4),
        (99, "1", 9),
        (100, "1", 10),
        (200, "1", 11),
        (15, "3/2", 5),
        (15, "0.1", 3),
    ],
)
def test_tier_count(size, kappa, tiers):
    # K = clamp(isqrt(floor(kappa^2 * N)), 3, 11): isqrt(15) = 3, isqrt(16) = 4, isqrt(floor(2.25 * 15)) = 5.
    result = competition_of([Fraction(i + 1, 3) for i in range(size)], RewardParams(tiers_kappa=kappa))
    assert result.competition.tiers == tiers


@pytest.mark.parametrize(("percentile", "high"), [(95, 19), (50, 10), (51, 11), (100, 20), (1, 1)])
def test_nearest_rank_percentile(percentile, high):
    # Excesses 1..20 weeks: H = x[ceil(p * 20 / 100) - 1]; p = 95 -> x[18] = 19, p = 51 -> ceil(10.2) = 11.
    result = competition_of(list(range(1, 21)), RewardParams(percentile=percentile))
    assert result.competition.low == 1
    assert result.competition.high == high


def test_tiers_by_hand():
    # Excesses 1..15 weeks, N = 15, K = 3, L = 1, H = x[ceil(14.25) - 1] = x[14] = 15; comp_weeks 13.
    result = competition_of(list(range(1, 16)))
    tiers = {i + 1: result.accounts[f"a{i:03d}"] for i in range(15)}
    # excess 1: rel = 0 -> s = 0 -> B = 1 + 0.2 = 6/5.
    assert tiers[1].tier == 0 and tiers[1].snapshot.multiplier == Fraction(6, 5)
    # excess 15: rel = 1, abs = 1 -> q = 1 -> s = floor(1 * 2) = 2 -> B = 1.2 + 0.1 = 13/10.
    assert tiers[15].tier == 2 and tiers[15].snapshot.multiplier == Fraction(13, 10)
    # excess 8: rel = 7/14 = 1/2, 0.5 ** 0.75 = 0.5946, abs = 8/13 -> q = 0.3659 -> s = floor(0.73) = 0.
    assert tiers[8].tier == 0
    # excess 13: rel = 12/14, 0.857 ** 0.75 = 0.8908, abs = 1 -> s = floor(1.78) = 1 -> B = 1.25.
    assert tiers[13].tier == 1 and tiers[13].snapshot.multiplier == Fraction(5, 4)
    # excess 12: rel = 11/14 -> 0.8347, abs = 12/13 -> q = 0.7705 -> s = floor(1.54) = 1.
    assert tiers[12].tier == 1


def test_multiplier_cap():
    # Base 0.25 + full competitive 0.1 would give 1.35; max_multiplier_bps caps it at 1.3.
    params = RewardParams(base_boost_bps=2500, comp_min_accounts=1, comp_min_total_earnings=0)
    result = competition_of([1, 20], params)
    assert result.accounts["a000"].snapshot.multiplier == Fraction(5, 4)
    assert result.accounts["a001"].snapshot.multiplier == Fraction(13, 10)


def test_output_bytes_do_not_depend_on_input_order():
    accounts = {f"0x{i:040x}": steady(weeks(Fraction(i, 2))) for i in range(60)}
    shuffled = list(accounts.items())
    random.Random(1).shuffle(shuffled)
    assert encode_result(close_epoch(accounts, DEFAULTS)) == encode_result(
        close_epoch(dict(shuffled), DEFAULTS)
    )


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (AccountEpoch(EpochInput(-1, True, False, 0)), "input.base_reward"),
        (AccountEpoch(EpochInput(1, 1, False, 0)), "input.registered"),  # type: ignore[arg-type]
        (AccountEpoch(EpochInput(1, True, False, 2**256)), "input.active_bond"),
        (AccountEpoch(EpochInput(1, True, False, 0), AccountState(history=[1])), "state.history"),  # type: ignore[arg-type]
        (AccountEpoch(EpochInput(1, True, False, 0), AccountState(history=(1, "2"))), "state.history[1]"),  # type: ignore[arg-type]
        (AccountEpoch(EpochInput(1, True, False, 0), AccountState(smoothed=1.5)), "state.smoothed"),  # type: ignore[arg-type]
        (
            AccountEpoch(EpochInput(1, True, False, 0), snapshot=Snapshot(Fraction(9, 10), 1)),
            "snapshot.multiplier",
        ),
        (AccountEpoch(EpochInput(1, True, False, 0), snapshot=Snapshot(1.2, 1)), "snapshot.multiplier"),  # type: ignore[arg-type]
        ("not an entry", "entry"),
    ],
)
def test_malformed_inputs_name_account_and_field(entry, field):
    with pytest.raises(RewardsInputError, match=re.escape(f"account 'bad': {field} ")):
        close_epoch({"ok": steady(0), "bad": entry}, DEFAULTS)


# -- properties ----------------------------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=200 * POD)


@st.composite
def account_epochs(draw):
    """An account of one of a few profiles: competitors first (shrinking leans towards them), then partly
    bonded ones, validator-sized bonds, new accounts and accounts with arbitrary flags and history."""
    profile = draw(st.sampled_from(["competitor", "partial", "validator", "new", "odd"]))
    daily = draw(st.integers(5 * POD, 300 * POD))
    weekly = 7 * daily
    near_daily = st.integers(daily // 2, 2 * daily)
    snapshot = draw(
        st.none()
        | st.builds(
            Snapshot,
            st.sampled_from([Fraction(1), Fraction(6, 5), Fraction(13, 10), Fraction(1237, 1000)]),
            st.integers(1, 3000 * POD),
        )
    )
    if profile == "new":
        return AccountEpoch(EpochInput(draw(near_daily), True, False, draw(st.integers(0, 40 * weekly))))
    history = tuple(draw(st.lists(near_daily, min_size=7, max_size=7)))
    state = AccountState(
        draw(st.integers(weekly // 2, 2 * weekly)), 10**4 * POD, history, 9, draw(st.booleans())
    )
    registered, suspended = True, False
    if profile == "competitor":
        bond = draw(st.integers(13 * weekly + 1, 53 * weekly))
    elif profile == "partial":
        bond = draw(st.integers(0, 13 * weekly))
    elif profile == "validator":
        bond = draw(st.integers(99_000 * POD, 200_000 * POD))
    else:
        closed = draw(st.sampled_from([0, 5, 6, 7]))
        lifetime = draw(st.sampled_from([0, 50 * POD - history[-1]]) | st.integers(0, 100 * POD))
        state = AccountState(
            state.smoothed, max(lifetime, 0), history[: min(closed, 7)], closed, state.validator
        )
        registered, suspended = draw(st.booleans()), draw(st.booleans())
        bond = draw(st.sampled_from([0, 1]) | st.integers(0, 60 * weekly))
    return AccountEpoch(EpochInput(draw(near_daily), registered, suspended, bond), state, snapshot)


populations = st.lists(account_epochs(), min_size=1, max_size=60).map(
    lambda entries: {f"0x{i:040x}": entry for i, entry in enumerate(entries)}
)
parameters = st.builds(
    RewardParams,
    comp_min_accounts=st.integers(1, 12),
    comp_min_total_earnings=st.sampled_from([0, 1000 * POD]),
    percentile=st.integers(1, 100),
    alpha=st.sampled_from(["0.75", "0.5", "1", "2.5"]),
    tiers_kappa=st.sampled_from(["1", "3/2", "0.5"]),
    comp_weeks=st.integers(1, 26),
)


@settings(max_examples=examples(150), deadline=None)
@given(populations, parameters)
def test_agrees_with_a_naive_reading_of_the_spec(accounts, params):
    result = close_epoch(accounts, params)
    assert digest(result.accounts) == digest(naive_close_epoch(accounts, params))


@settings(max_examples=examples(25), deadline=None, database=None)
@given(st.integers(0, 2**32), st.integers(20, 400), parameters)
def test_agrees_with_a_naive_reading_on_synthetic_populations(seed, size, params):
    # Realistic mixes (chain.rewards.simulate.synthetic_epoch) where the competition is nearly always on.
    accounts = synthetic_epoch(size, seed, params)
    result = close_epoch(accounts, params)
    assert digest(result.accounts) == digest(naive_close_epoch(accounts, params))


@settings(max_examples=examples(100), deadline=None)
@given(populations, parameters)
def test_multiplier_bounds_and_boostable_cap(accounts, params):
    result = close_epoch(accounts, params)
    ceiling = Fraction(params.max_multiplier_bps, 10_000)
    for account_id, close in result.accounts.items():
        multiplier = close.snapshot.multiplier
        assert 1 <= multiplier <= ceiling == Fraction(13, 10)
        if not close.snapshot.boost_eligible:
            assert multiplier == 1 and not close.snapshot.validator_eligible
        entry = accounts[account_id]
        snapshot = entry.snapshot or Snapshot(Fraction(1), params.earnings_floor)
        cap = params.boost_cap_bps * snapshot.denominator // (10_000 * params.n_week)
        bonus = close.reward - entry.input.base_reward
        assert 0 <= bonus <= (snapshot.multiplier - 1) * cap


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(st.integers(0, 40 * WEEKLY), min_size=12, max_size=30),
    st.data(),
)
def test_multiplier_is_monotonic_in_own_bond(bonds, data):
    params = RewardParams(comp_min_total_earnings=0)
    index = data.draw(st.integers(0, len(bonds) - 1))
    low, high = sorted(data.draw(st.lists(st.integers(0, 60 * WEEKLY), min_size=2, max_size=2)))

    def multiplier(bond: int) -> Fraction:
        accounts = {f"a{i:03d}": steady(bond if i == index else other) for i, other in enumerate(bonds)}
        return close_epoch(accounts, params).accounts[f"a{index:03d}"].snapshot.multiplier

    assert multiplier(low) <= multiplier(high)


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(0, 20 * 14_000 * POD), st.booleans())
def test_validator_rule(bond, was_validator):
    weekly = 14_000 * POD
    close = close_epoch({"v": steady(bond, weekly=weekly, validator=was_validator)}, DEFAULTS).accounts["v"]
    threshold = 10 if was_validator else 13
    expected = bond >= 100_000 * POD and Fraction(bond, weekly) >= threshold
    assert close.snapshot.validator_eligible is expected


@settings(max_examples=examples(40), deadline=None)
@given(populations, st.randoms(use_true_random=False))
def test_deterministic_across_runs_and_input_orders(accounts, rng):
    first = encode_result(close_epoch(accounts, DEFAULTS))
    items = list(accounts.items())
    rng.shuffle(items)
    assert encode_result(close_epoch(dict(items), DEFAULTS)) == first
    assert encode_result(close_epoch(accounts, DEFAULTS)) == first


# -- the float pre-check of a tier ---------------------------------------------------------------------------

ratios = st.tuples(st.integers(1, 10**30), st.integers(1, 10**30))


@settings(max_examples=examples(300), deadline=None)
@given(ratios, ratios, ratios, st.integers(1, 10), st.integers(2, 11), st.sampled_from(["0.75", "0.3", "7"]))
def test_float_precheck_gives_the_decimal_tier(low, high, excess, comp_weeks, tiers, alpha):
    # Order the three so that L <= excess (excess is an element of O, so at least the minimum).
    (ln, ld), (xn, xd), (hn, hd) = sorted((low, excess, high), key=lambda r: Fraction(*r))
    params = RewardParams(comp_weeks=comp_weeks, alpha=alpha)
    tier = _TierFunction((ln, ld), (hn, hd), params)((xn, xd), tiers - 1)
    low_f, high_f, excess_f = Fraction(ln, ld), Fraction(hn, hd), Fraction(xn, xd)
    rel = Fraction(0) if high_f <= low_f else (min(excess_f, high_f) - low_f) / (high_f - low_f)
    absolute = min(Fraction(1), excess_f / comp_weeks)
    expected = (
        0
        if rel == 0
        else _tier_exactly(
            *rel.as_integer_ratio(), *absolute.as_integer_ratio(), params.alpha_decimal, tiers - 1
        )
    )
    assert tier == expected


def test_tier_boundaries_go_through_the_decimal_path():
    # rel = 1 and abs = j / (K - 1) put q * (K - 1) exactly on an integer, where a float may fall short.
    params = RewardParams(comp_weeks=10)
    tier_of = _TierFunction((0, 1), (1, 1), params)
    for excess_weeks in range(1, 11):
        assert tier_of((excess_weeks, 1), 10) == excess_weeks


# -- exact order statistics over float-sorted ratios ---------------------------------------------------------

near_one = st.tuples(st.integers(10**20 - 5, 10**20 + 5), st.just(10**20))


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(near_one | ratios, min_size=1, max_size=30), st.data())
def test_order_statistic_is_exact_when_floats_tie(values, data):
    # Ratios within 1e-19 of 1 all round to the float 1.0; the exact order must still decide.
    rank = data.draw(st.integers(0, len(values) - 1))
    assert Fraction(*_order_statistic(values, rank)) == sorted(Fraction(*value) for value in values)[rank]


def test_order_statistic_picks_inside_a_float_tie():
    values = [(10**20 + 2, 10**20), (1, 1), (10**20 + 1, 10**20), (3, 1)]
    assert [_order_statistic(values, rank) for rank in range(4)] == [
        (1, 1),
        (10**20 + 1, 10**20),
        (10**20 + 2, 10**20),
        (3, 1),
    ]
