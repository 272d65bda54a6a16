"""Election: the same chain state elects the same set; genesis carried forward until someone is eligible."""

from fractions import Fraction

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.client import ValidatorSet
from chain.rewards import POD, AccountEpoch, EpochInput, RewardParams, close_epoch
from validator.election import (
    MAX_CHANGE_BPS,
    MAX_WEIGHT_BPS,
    MIN_ELECTED,
    MIN_ELECTED_BOND,
    WEIGHT_SCALE,
    Candidate,
    candidates_from_close,
    capped_weights,
    elect,
)

pytestmark = pytest.mark.unit


def _address(n: int) -> str:
    return to_checksum_address(f"0x{n:040x}")


GENESIS = ValidatorSet.of({_address(1): 1, _address(2): 1, _address(3): 1})
MIN_BOND = 100_000 * POD
QUORUM = Fraction(2, 3)


def test_nobody_eligible_carries_the_current_set_forward_into_the_new_epoch():
    candidates = [Candidate(_address(9), joined=True, eligible=False, bond_shares=10**24)]
    elected = elect(candidates, GENESIS, epoch=4)
    assert (elected.members, elected.weights, elected.epoch) == (GENESIS.members, GENESIS.weights, 4)


def _quorum_share(elected: ValidatorSet, owned: set[str]) -> Fraction:
    weights = dict(zip(elected.members, elected.weights, strict=True))
    return Fraction(sum(w for a, w in weights.items() if a in owned), elected.total)


def _run(candidates, current=GENESIS, epochs=60):
    """The sets of `epochs` successive elections from the same candidates."""
    sets = []
    for epoch in range(1, epochs + 1):
        current = elect(candidates, current, epoch=epoch)
        sets.append(current)
    return sets


def test_eligible_joined_bonded_candidates_are_elected_by_bond():
    candidates = [
        Candidate(_address(20 + n), joined=True, eligible=True, bond_shares=4 * MIN_BOND) for n in range(7)
    ]
    candidates += [
        Candidate(_address(6), joined=False, eligible=True, bond_shares=900 * MIN_BOND),  # did not opt in
        Candidate(_address(8), joined=True, eligible=False, bond_shares=900 * MIN_BOND),  # not eligible
        Candidate(_address(4), joined=True, eligible=True, bond_shares=0),  # nothing bonded
    ]
    final = _run(candidates)[-1]
    assert final.members == tuple(_address(20 + n) for n in range(7))  # ascending address, genesis gone
    assert final.weights == (WEIGHT_SCALE // 7,) * 7 and final.epoch == 60


def test_the_genesis_set_stays_until_the_elected_set_is_large_enough():
    few = [Candidate(_address(20 + n), True, True, 10 * MIN_BOND) for n in range(MIN_ELECTED - 1)]
    assert elect(few, GENESIS, epoch=3).members == GENESIS.members  # too few members
    poor = [Candidate(_address(20 + n), True, True, MIN_BOND) for n in range(MIN_ELECTED)]
    assert MIN_ELECTED * MIN_BOND < MIN_ELECTED_BOND
    assert elect(poor, GENESIS, epoch=3).members == GENESIS.members  # too little bond between them


def test_the_set_changes_by_a_bounded_share_of_weight_per_epoch():
    candidates = [Candidate(_address(20 + n), True, True, (n + 1) * MIN_BOND) for n in range(10)]
    previous = GENESIS
    for elected in _run(candidates, epochs=15):
        before = {
            m: Fraction(w, previous.total) for m, w in zip(previous.members, previous.weights, strict=True)
        }
        after = {m: Fraction(w, elected.total) for m, w in zip(elected.members, elected.weights, strict=True)}
        moved = sum(abs(after.get(m, 0) - before.get(m, 0)) for m in set(before) | set(after)) / 2
        assert moved <= Fraction(MAX_CHANGE_BPS, 10_000) + Fraction(1, 10**6)
        previous = elected
    assert _quorum_share(previous, set(GENESIS.members)) == 0  # gone after ten steps of 10%


def test_no_single_account_is_ever_a_quorum():
    """Attack: one minimum-bond account, then one whale, against the genesis set and small honest members.
    The old election handed the whole set to the only eligible account at the next root."""
    alone = [Candidate(_address(99), True, True, MIN_BOND)]
    assert all(_quorum_share(s, {_address(99)}) == 0 for s in _run(alone))
    honest = [Candidate(_address(20 + n), True, True, 3 * MIN_BOND) for n in range(MIN_ELECTED)]
    whale = Candidate(_address(99), True, True, 1000 * MIN_BOND)
    shares = [_quorum_share(s, {_address(99)}) for s in _run([*honest, whale], epochs=40)]
    assert abs(max(shares) - Fraction(MAX_WEIGHT_BPS, 10_000)) < Fraction(1, 10**6)  # capped, by rounding
    assert max(shares) < QUORUM


@settings(max_examples=50, deadline=None)
@given(
    honest=st.lists(st.integers(1, 50), min_size=MIN_ELECTED, max_size=12),
    accounts=st.integers(1, 40),
    fraction=st.fractions(min_value=0, max_value=Fraction(1, 3)).filter(lambda f: f < Fraction(1, 3)),
)
def test_an_owner_of_less_than_a_third_of_the_bond_never_reaches_a_quorum(honest, accounts, fraction):
    """Attack: however the attacker splits its bond into accounts, and whatever the honest members bond."""
    honest_bond = sum(honest) * MIN_BOND
    attacker_bond = int(fraction * honest_bond / (1 - fraction))
    per_account = attacker_bond // accounts
    candidates = [Candidate(_address(20 + n), True, True, b * MIN_BOND) for n, b in enumerate(honest)]
    attacker = {_address(500 + n) for n in range(accounts)}
    candidates += [Candidate(a, True, True, per_account) for a in attacker if per_account > 0]
    for elected in _run(candidates, epochs=25):
        assert _quorum_share(elected, attacker) < QUORUM


def test_the_set_is_capped_heaviest_first_and_ties_go_to_the_lower_address():
    bonds = {1: 1000, 2: 999, 4: 998, 3: 998, 5: 10}
    candidates = [Candidate(_address(n), True, True, bond * MIN_BOND) for n, bond in bonds.items()]
    options = {
        "epoch": 1,
        "max_members": 3,
        "min_elected": 3,
        "min_elected_bond": 0,
        "max_change_bps": 10_000,
    }
    elected = elect(candidates, GENESIS, **options)
    assert elected.members == (_address(1), _address(2), _address(3))
    assert elect(reversed(candidates), GENESIS, **options) == elected  # order-independent


def test_capped_weights_share_the_excess_by_bond():
    assert capped_weights({"a": 90, "b": 5, "c": 5}, cap_bps=4000, total=1000) == {
        "a": 400,
        "b": 300,
        "c": 300,
    }
    assert capped_weights({"a": 1, "b": 1, "c": 2}, cap_bps=6000, total=1000) == {
        "a": 250,
        "b": 250,
        "c": 500,
    }
    with pytest.raises(ValueError, match="cannot share"):
        capped_weights({"a": 1, "b": 1}, cap_bps=4000)


def test_candidates_come_from_the_reward_engines_close_with_its_hysteresis():
    params = RewardParams()
    bond = 200_000 * POD
    inputs = {
        _address(10): AccountEpoch(
            EpochInput(base_reward=10 * POD, registered=True, suspended=False, active_bond=bond)
        ),
        _address(11): AccountEpoch(
            EpochInput(base_reward=10 * POD, registered=True, suspended=False, active_bond=0)
        ),
    }
    seasoned = params.validator_enter_weeks * params.n_week
    joined = [_address(10), _address(11)]
    for closed in range(1, seasoned + 1):
        close = close_epoch(inputs, params)
        inputs = {
            a: AccountEpoch(inputs[a].input, result.state, result.snapshot)
            for a, result in close.accounts.items()
        }
        by_address = {c.address: c for c in candidates_from_close(close, joined, {_address(10): 7})}
        if closed == params.min_history_epochs + 1:
            # Eligible by the engine's bond test (13 weeks of its tiny earnings), but not yet 13 weeks old.
            assert close.accounts[_address(10)].snapshot.validator_eligible
            assert not by_address[_address(10)].eligible
    assert by_address[_address(10)].eligible and by_address[_address(10)].bond_shares == 7
    assert not by_address[_address(11)].eligible  # no bond
