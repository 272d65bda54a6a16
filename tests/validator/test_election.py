"""Election: the same chain state elects the same set; genesis carried forward until someone is eligible."""

import pytest
from eth_utils import to_checksum_address

from chain.client import ValidatorSet
from chain.rewards import POD, AccountEpoch, EpochInput, RewardParams, close_epoch
from validator.election import Candidate, candidates_from_close, elect

pytestmark = pytest.mark.unit


def _address(n: int) -> str:
    return to_checksum_address(f"0x{n:040x}")


GENESIS = ValidatorSet.of({_address(1): 1, _address(2): 1, _address(3): 1})


def test_nobody_eligible_carries_the_current_set_forward_into_the_new_epoch():
    candidates = [Candidate(_address(9), joined=True, eligible=False, bond_shares=10**24)]
    elected = elect(candidates, GENESIS, epoch=4)
    assert (elected.members, elected.weights, elected.epoch) == (GENESIS.members, GENESIS.weights, 4)


def test_eligible_joined_bonded_candidates_are_elected_by_bond():
    candidates = [
        Candidate(_address(7), joined=True, eligible=True, bond_shares=300),
        Candidate(_address(5), joined=True, eligible=True, bond_shares=100),
        Candidate(_address(6), joined=False, eligible=True, bond_shares=900),  # did not opt in
        Candidate(_address(8), joined=True, eligible=False, bond_shares=900),  # not eligible
        Candidate(_address(4), joined=True, eligible=True, bond_shares=0),  # nothing bonded
    ]
    elected = elect(candidates, GENESIS, epoch=12)
    assert elected.members == (_address(5), _address(7))  # the contract's order: ascending address
    assert elected.weights == (100, 300) and elected.epoch == 12


def test_the_set_is_capped_heaviest_first_and_ties_go_to_the_lower_address():
    bonds = {1: 1000, 2: 999, 4: 998, 3: 998, 5: 10}
    candidates = [Candidate(_address(n), True, True, bond) for n, bond in bonds.items()]
    elected = elect(candidates, GENESIS, epoch=1, max_members=3)
    assert elected.members == (_address(1), _address(2), _address(3))
    assert elect(reversed(candidates), GENESIS, epoch=1, max_members=3) == elected  # order-independent


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
    for _ in range(params.min_history_epochs + 1):  # build the history eligibility needs
        close = close_epoch(inputs, params)
        inputs = {
            a: AccountEpoch(inputs[a].input, result.state, result.snapshot)
            for a, result in close.accounts.items()
        }
    candidates = candidates_from_close(
        close, joined=[_address(10), _address(11)], bond_shares={_address(10): 7}
    )
    by_address = {c.address: c for c in candidates}
    assert by_address[_address(10)].eligible and by_address[_address(10)].bond_shares == 7
    assert not by_address[_address(11)].eligible  # no bond
    assert elect(candidates, GENESIS, epoch=9).members == (_address(10),)
