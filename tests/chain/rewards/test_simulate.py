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
