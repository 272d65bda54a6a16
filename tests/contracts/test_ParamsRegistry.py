"""ParamsRegistry: the spec's defaults on chain, bounded setters, cross-parameter relations, owner only."""

from decimal import Decimal
from fractions import Fraction

import brownie
import pytest

from chain.rewards.params import AMOUNT_PARAMS, RewardParams

WAD = 10**18


@pytest.fixture(scope="module")
def registry(ParamsRegistry, deployer):
    return ParamsRegistry.deploy(deployer, {"from": deployer})


def _as_spec_value(name, value):
    """An on-chain uint as the off-chain engine spells it (alpha and tiers_kappa are WAD fixed point)."""
    if name == "alpha":
        return str((Decimal(value) / Decimal(WAD)).normalize())
    if name == "tiers_kappa":
        return str(Fraction(value, WAD))
    return value


def test_defaults_are_the_spec_table_in_order(registry):
    names, values = registry.getAll()
    defaults = RewardParams()
    assert list(names) == list(RewardParams.__dataclass_fields__)
    assert {n: _as_spec_value(n, v) for n, v in zip(names, values, strict=True)} == {
        n: getattr(defaults, n) for n in names
    }
    assert registry.valueOf("alpha") == 75 * WAD // 100
    assert registry.valueOf("validator_min_bond") == 100_000 * WAD
    assert set(names) >= AMOUNT_PARAMS


def test_set_param_changes_value_and_emits(registry, deployer):
    tx = registry.setParam("full_weeks", 26, {"from": deployer})
    assert registry.valueOf("full_weeks") == 26
    assert tx.events["ParamSet"]["name"] == "full_weeks"
    assert (tx.events["ParamSet"]["oldValue"], tx.events["ParamSet"]["newValue"]) == (13, 26)


def test_only_owner_sets(registry, accounts):
    with brownie.reverts(revert_pattern=r"OwnableUnauthorizedAccount: .*"):
        registry.setParam("full_weeks", 26, {"from": accounts[5]})
    with brownie.reverts(revert_pattern=r"OwnableUnauthorizedAccount: .*"):
        registry.setParams(["full_weeks"], [26], {"from": accounts[5]})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epoch_hours", 11),
        ("epoch_hours", 169),
        ("lambda_up_bps", 10001),
        ("earnings_floor", 0),
        ("percentile", 0),
        ("percentile", 101),
        ("alpha", 0),
        ("alpha", 10 * WAD + 1),
        ("tiers_kappa", 0),
        ("tiers_min", 1),
        ("max_multiplier_bps", 9999),
        ("max_multiplier_bps", 30001),
        ("validator_min_bond", 1_000 * WAD - 1),
        ("validator_min_bond", 10_000_000 * WAD + 1),
    ],
)
def test_out_of_bounds_reverts(registry, deployer, name, value):
    before = registry.valueOf(name)
    low, high = registry.boundsOf(name)
    assert not low <= value <= high
    with brownie.reverts(revert_pattern=r"ParamsRegistryOutOfBounds: .*"):
        registry.setParam(name, value, {"from": deployer})
    assert registry.valueOf(name) == before


def test_bounds_are_inclusive(registry, deployer):
    low, high = registry.boundsOf("percentile")
    registry.setParam("percentile", low, {"from": deployer})
    registry.setParam("percentile", high, {"from": deployer})
    assert registry.valueOf("percentile") == high == 100


def test_unknown_name_reverts(registry, deployer):
    with brownie.reverts(revert_pattern=r"ParamsRegistryUnknownParam: .*"):
        registry.setParam("lambda_bps", 1, {"from": deployer})
    with brownie.reverts(revert_pattern=r"ParamsRegistryUnknownParam: .*"):
        registry.valueOf("nope")
    with brownie.reverts(revert_pattern=r"ParamsRegistryUnknownParam: .*"):
        registry.boundsOf("nope")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epoch_hours", 25),  # does not divide 168
        ("lambda_down_bps", 5000),  # not below lambda_up_bps
        ("validator_exit_weeks", 14),  # above validator_enter_weeks
        ("tiers_max", 2),  # below tiers_min
    ],
)
def test_broken_relation_reverts(registry, deployer, name, value):
    with brownie.reverts(revert_pattern=r"ParamsRegistryInconsistent: .*"):
        registry.setParam(name, value, {"from": deployer})


def test_batch_moves_related_params_together(registry, deployer):
    # Alone, lambda_up 800 would fall below lambda_down 1000; together with lambda_down 500 it is consistent.
    with brownie.reverts(revert_pattern=r"ParamsRegistryInconsistent: .*"):
        registry.setParam("lambda_up_bps", 800, {"from": deployer})
    registry.setParams(["lambda_up_bps", "lambda_down_bps"], [800, 500], {"from": deployer})
    assert (registry.valueOf("lambda_up_bps"), registry.valueOf("lambda_down_bps")) == (800, 500)


def test_batch_checks_bounds_lengths_and_relations(registry, deployer):
    with brownie.reverts(revert_pattern=r"ParamsRegistryLengthMismatch: .*"):
        registry.setParams(["full_weeks"], [1, 2], {"from": deployer})
    with brownie.reverts(revert_pattern=r"ParamsRegistryOutOfBounds: .*"):
        registry.setParams(["full_weeks", "percentile"], [20, 0], {"from": deployer})
    with brownie.reverts(revert_pattern=r"ParamsRegistryInconsistent: .*"):
        registry.setParams(["tiers_min", "tiers_max"], [12, 11], {"from": deployer})
    assert registry.valueOf("full_weeks") == 13


def test_values_round_trip_into_the_engine_params(registry, deployer):
    registry.setParams(
        ["alpha", "tiers_kappa", "epoch_hours"], [WAD // 2, 3 * WAD // 2, 12], {"from": deployer}
    )
    names, values = registry.getAll()
    spec = {n: _as_spec_value(n, v) for n, v in zip(names, values, strict=True)}
    params = RewardParams(**spec)
    assert (params.alpha, params.kappa, params.n_week) == ("0.5", Fraction(3, 2), 14)
