"""The simulation: deterministic for a seed, and every row is what the engine's rules give."""

from fractions import Fraction

import pytest

from chain.errors import RewardsInputError
from chain.rewards import RewardParams
from chain.rewards.simulate import format_table, plot, simulate, synthetic_epoch

pytestmark = pytest.mark.unit

PARAMS = RewardParams()


def test_same_seed_same_result_other_seed_other_result():
    assert simulate(40, 7, 9, PARAMS) == simulate(40, 7, 9, PARAMS)
    assert simulate(40, 7, 9, PARAMS) != simulate(40, 8, 9, PARAMS)
    assert synthetic_epoch(50, 1, PARAMS) == synthetic_epoch(50, 1, PARAMS)


def test_rows_follow_the_spec_multiplier():
    simulation = simulate(150, 3, 21, PARAMS)
    competition = simulation.competition
    assert competition.enabled, "150 operators with the default mix should compete"
    steps = competition.tiers - 1
    for row in simulation.rows:
        if not row.boost_eligible:
            assert row.multiplier == 1
            continue
        # Spec steps 7 and 11: B = min(1.3, 1 + 0.2 * min(1, w / 13) + s / (K - 1) * 0.1).
        comp = Fraction(0) if row.tier is None else Fraction(row.tier, steps) / 10
        expected = min(Fraction(13, 10), 1 + Fraction(1, 5) * min(Fraction(1), row.weeks_bonded / 13) + comp)
        assert row.multiplier == expected
        assert (row.tier is not None) == (
            row.weeks_bonded > 13 and row.smoothed >= PARAMS.comp_min_account_earnings
        )
    assert [row.weeks_bonded for row in simulation.rows] == sorted(
        row.weeks_bonded for row in simulation.rows
    )


def test_table_has_one_line_per_operator_and_a_summary():
    simulation = simulate(30, 1, 10, PARAMS)
    lines = format_table(simulation).splitlines()
    assert len(lines) == 1 + 30 + 1
    for line, row in zip(lines[1:-1], simulation.rows, strict=True):
        fields = line.split()
        assert fields[0] == row.account
        assert float(fields[4]) == pytest.approx(float(row.multiplier), abs=1e-6)
        assert fields[5] == ("-" if row.tier is None else str(row.tier))
    assert lines[-1].startswith("after 10 epochs: competitive set N=")


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "boost.png"
    plot(simulate(20, 2, 8, PARAMS), path, PARAMS)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_simulation_is_refused():
    with pytest.raises(RewardsInputError):
        simulate(0, 1, 5, PARAMS)


def test_paying_ones_own_node_never_pays_at_launch_parameters():
    """docs/rewards.md, "Base rewards": an operator paying its own node with throwaway client keys, bonded
    for the largest boost and claiming bonded, gets back less POD than it paid, at launch parameters."""
    from chain.deploy import USD_UNIT, DeployParams
    from chain.rewards.simulate import simulate_self_dealing

    pod_per_unit = Fraction(10 * 10**18, USD_UNIT)  # the dev pool's 0.1 lUSD per POD
    bonus = DeployParams().bond_bonus_bps
    for spend in (1, 100, 10_000):
        for honest in (0, 1_000):
            for share in (Fraction(0), Fraction(1, 10)):
                [row] = simulate_self_dealing(
                    PARAMS,
                    spend=spend * USD_UNIT,
                    honest_revenue=honest * USD_UNIT,
                    pod_per_unit=pod_per_unit,
                    bonus_bps=bonus,
                    stake_share=share,
                    emission_bps=(PARAMS.emission_revenue_bps,),
                )
                assert row.rewards > 0 and row.returned < 1, (spend, honest, share, row)
    # The simulation does see profit where there is some: a subsidy above 1 / (1.3 x 1.1) of revenue.
    [generous] = simulate_self_dealing(
        PARAMS,
        spend=100 * USD_UNIT,
        honest_revenue=1_000 * USD_UNIT,
        pod_per_unit=pod_per_unit,
        bonus_bps=bonus,
        emission_bps=(7_500,),
    )
    assert generous.returned > 1
