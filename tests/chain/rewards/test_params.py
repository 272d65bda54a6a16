"""Reward parameters: the spec's defaults, overrides as the exchange format writes them, and bounds."""

import pytest

from chain.errors import RewardsInputError, RewardsParamsError
from chain.rewards import POD, RewardParams

pytestmark = pytest.mark.unit


def test_defaults_are_the_spec_table():
    params = RewardParams()
    assert (params.epoch_hours, params.n_week) == (24, 7)
    assert (params.lambda_up_bps, params.lambda_down_bps) == (5000, 1000)
    assert (params.min_history_epochs, params.min_lifetime, params.earnings_floor) == (7, 50 * POD, POD)
    assert (params.boost_cap_bps, params.full_weeks) == (30000, 13)
    assert (params.validator_enter_weeks, params.validator_exit_weeks) == (13, 10)
    assert params.validator_min_bond == 100_000 * POD
    assert (params.comp_weeks, params.percentile, params.alpha) == (13, 95, "0.75")
    assert (params.comp_min_accounts, params.comp_min_account_earnings) == (10, 10 * POD)
    assert params.comp_min_total_earnings == 1000 * POD
    assert (params.tiers_kappa, params.tiers_min, params.tiers_max) == ("1", 3, 11)
    assert (params.base_boost_bps, params.comp_boost_bps, params.max_multiplier_bps) == (2000, 1000, 13000)


def test_overrides_round_trip():
    overrides = {"epoch_hours": 12, "min_lifetime": "7", "alpha": "0.5", "tiers_kappa": "3/2"}
    params = RewardParams.from_overrides(overrides)
    assert params.n_week == 14 and params.min_lifetime == 7 and params.kappa == 1.5
    assert params.overrides() == overrides
    assert RewardParams.from_overrides({}) == RewardParams()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epoch_hour": 24}, "unknown parameter 'epoch_hour'"),
        ({"epoch_hours": 25}, "'epoch_hours' must divide 168"),
        ({"epoch_hours": 0}, "'epoch_hours' must divide 168"),
        ({"epoch_hours": "24"}, "'epoch_hours' must be an integer"),
        ({"epoch_hours": True}, "'epoch_hours' must be an integer"),
        ({"lambda_up_bps": 10001}, "'lambda_up_bps' must be at most 10000"),
        ({"lambda_down_bps": -1}, "'lambda_down_bps' must be within"),
        ({"earnings_floor": "0"}, "'earnings_floor' must be at least 1 wei"),
        ({"min_lifetime": 50}, "'min_lifetime' is an amount: a decimal string of wei"),
        ({"min_lifetime": "5e19"}, "'min_lifetime' is an amount"),
        ({"min_lifetime": "-1"}, "'min_lifetime' is an amount"),
        ({"full_weeks": 0}, "'full_weeks' must be at least 1"),
        ({"comp_weeks": 0}, "'comp_weeks' must be at least 1"),
        ({"validator_exit_weeks": 14}, "'validator_exit_weeks' must not exceed validator_enter_weeks"),
        ({"percentile": 0}, "'percentile' must be within [1, 100]"),
        ({"percentile": 101}, "'percentile' must be within [1, 100]"),
        ({"comp_min_accounts": 0}, "'comp_min_accounts' must be at least 1"),
        ({"tiers_min": 1}, "'tiers_min' must be at least 2"),
        ({"tiers_max": 2}, "'tiers_max' must be at least tiers_min"),
        ({"max_multiplier_bps": 9999}, "'max_multiplier_bps' must be at least 10000"),
        ({"alpha": 0.75}, "'alpha' must be a string of at most 100 characters"),
        ({"alpha": "0"}, "'alpha' must be a decimal string in (0, 10]"),
        ({"alpha": "1e-1"}, "'alpha' must be a decimal string"),
        ({"alpha": "NaN"}, "'alpha' must be a decimal string"),
        ({"alpha": "11"}, "'alpha' must be a decimal string in (0, 10]"),
        ({"tiers_kappa": "0"}, "'tiers_kappa' must be a positive rational"),
        ({"tiers_kappa": "1/0"}, "'tiers_kappa' must be a positive rational"),
        ({"tiers_kappa": "-1"}, "'tiers_kappa' must be a positive rational"),
        ({"tiers_kappa": "1" * 5000}, "'tiers_kappa' must be a string of at most 100 characters"),
    ],
)
def test_bad_overrides_name_the_parameter(overrides, message):
    with pytest.raises(RewardsParamsError) as raised:
        RewardParams.from_overrides(overrides)
    assert message in str(raised.value)
    assert isinstance(raised.value, RewardsInputError)
