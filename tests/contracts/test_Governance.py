"""Governance: a real proposal through Governor -> Timelock -> bounded setter, with time travel; staked and
bonded POD vote."""

import brownie
import pytest
from brownie import chain
from eth_utils import keccak

from tests.contracts.conftest import (
    POD_UNIT,
    PROPOSAL_THRESHOLD,
    QUORUM_BPS,
    TIMELOCK_DELAY,
    VOTING_DELAY,
    VOTING_PERIOD,
    bond_pod,
    stake_pod,
)

FOR, AGAINST = 1, 0
# Governor.ProposalState
PENDING, ACTIVE, DEFEATED, SUCCEEDED, QUEUED, EXECUTED = 0, 1, 3, 4, 5, 7


@pytest.fixture(scope="module")
def voter(pod, treasury, governor):
    """The treasury delegates to itself: 60% of supply, far above quorum and threshold."""
    pod.delegate(treasury, {"from": treasury})
    chain.sleep(1)
    chain.mine()
    return treasury


def _sleep(seconds):
    chain.sleep(seconds)
    chain.mine()


def _propose(governor, proposer, target, calldata, description):
    tx = governor.propose([target.address], [0], [calldata], description, {"from": proposer})
    return tx.events["ProposalCreated"]["proposalId"]


def _pass_and_queue(governor, voter, target, calldata, description):
    proposal_id = _propose(governor, voter, target, calldata, description)
    assert governor.state(proposal_id) == PENDING
    _sleep(VOTING_DELAY + 1)
    assert governor.state(proposal_id) == ACTIVE
    governor.castVote(proposal_id, FOR, {"from": voter})
    _sleep(VOTING_PERIOD + 1)
    assert governor.state(proposal_id) == SUCCEEDED
    governor.queue([target.address], [0], [calldata], keccak(text=description), {"from": voter})
    assert governor.state(proposal_id) == QUEUED
    return proposal_id


def test_settings_and_timestamp_clock(governor, timelock, pod):
    assert governor.CLOCK_MODE() == "mode=timestamp" == pod.CLOCK_MODE()
    assert (governor.votingDelay(), governor.votingPeriod()) == (VOTING_DELAY, VOTING_PERIOD)
    assert governor.proposalThreshold() == PROPOSAL_THRESHOLD
    assert governor.quorumNumerator() == QUORUM_BPS and governor.quorumDenominator() == 10_000
    assert governor.timelock() == timelock
    assert timelock.getMinDelay() == TIMELOCK_DELAY
    assert timelock.hasRole(timelock.PROPOSER_ROLE(), governor)


def test_proposal_passes_through_timelock_into_the_registry(governor, timelock, params_registry, voter):
    calldata = params_registry.setParam.encode_input("full_weeks", 26)
    description = "Raise full_weeks to 26"
    proposal_id = _pass_and_queue(governor, voter, params_registry, calldata, description)

    # The timelock holds the call for its delay: executing early reverts in the timelock.
    with brownie.reverts(revert_pattern=r"TimelockUnexpectedOperationState: .*"):
        governor.execute(
            [params_registry.address], [0], [calldata], keccak(text=description), {"from": voter}
        )
    _sleep(TIMELOCK_DELAY + 1)
    tx = governor.execute(
        [params_registry.address], [0], [calldata], keccak(text=description), {"from": voter}
    )
    assert governor.state(proposal_id) == EXECUTED
    assert params_registry.valueOf("full_weeks") == 26
    assert tx.events["ParamSet"]["newValue"] == 26


def test_proposal_with_out_of_bounds_value_fails_at_execution(governor, params_registry, voter):
    calldata = params_registry.setParam.encode_input("percentile", 101)
    description = "Percentile 101"
    _pass_and_queue(governor, voter, params_registry, calldata, description)
    _sleep(TIMELOCK_DELAY + 1)
    with brownie.reverts(revert_pattern=r"ParamsRegistryOutOfBounds: .*"):
        governor.execute(
            [params_registry.address], [0], [calldata], keccak(text=description), {"from": voter}
        )
    assert params_registry.valueOf("percentile") == 95


def test_defeated_proposal_cannot_queue(governor, params_registry, voter, pod, treasury, accounts):
    opponent = accounts[6]
    pod.transfer(opponent, 100_000_000 * POD_UNIT, {"from": treasury})
    pod.delegate(opponent, {"from": opponent})
    _sleep(1)
    calldata = params_registry.setParam.encode_input("full_weeks", 20)
    description = "Contested"
    proposal_id = _propose(governor, voter, params_registry, calldata, description)
    _sleep(VOTING_DELAY + 1)
    governor.castVote(proposal_id, AGAINST, {"from": voter})
    governor.castVote(proposal_id, FOR, {"from": opponent})
    _sleep(VOTING_PERIOD + 1)
    assert governor.state(proposal_id) == DEFEATED
    with brownie.reverts(revert_pattern=r"GovernorUnexpectedProposalState: .*"):
        governor.queue([params_registry.address], [0], [calldata], keccak(text=description), {"from": voter})


def test_proposer_below_threshold_is_refused(governor, params_registry, accounts, voter):
    calldata = params_registry.setParam.encode_input("full_weeks", 20)
    with brownie.reverts(revert_pattern=r"GovernorInsufficientProposerVotes: .*"):
        governor.propose([params_registry.address], [0], [calldata], "x", {"from": accounts[7]})


def test_registry_refuses_everyone_but_the_timelock(params_registry, voter, deployer):
    for sender in (voter, deployer):
        with brownie.reverts(revert_pattern=r"OwnableUnauthorizedAccount: .*"):
            params_registry.setParam("full_weeks", 26, {"from": sender})


def test_governor_settings_only_through_governance(governor, voter):
    with brownie.reverts(revert_pattern=r"GovernorOnlyExecutor: .*"):
        governor.setVotingPeriod(2 * 86400, {"from": voter})


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        ("setVotingPeriod", 3600),  # below one day
        ("setVotingPeriod", 31 * 86400),
        ("setVotingDelay", 31 * 86400),
        ("setProposalThreshold", 10_000_001 * POD_UNIT),
        ("updateQuorumNumerator", 9),
        ("updateQuorumNumerator", 5_001),
    ],
)
def test_governor_setters_are_bounded(governor, voter, setter, value):
    calldata = getattr(governor, setter).encode_input(value)
    description = f"{setter} {value}"
    _pass_and_queue(governor, voter, governor, calldata, description)
    _sleep(TIMELOCK_DELAY + 1)
    with brownie.reverts(revert_pattern=r"DolphinGovernorSettingOutOfBounds: .*"):
        governor.execute([governor.address], [0], [calldata], keccak(text=description), {"from": voter})


def test_governor_setter_within_bounds_applies(governor, voter):
    calldata = governor.setVotingPeriod.encode_input(7 * 86400)
    _pass_and_queue(governor, voter, governor, calldata, "week-long votes")
    _sleep(TIMELOCK_DELAY + 1)
    governor.execute([governor.address], [0], [calldata], keccak(text="week-long votes"), {"from": voter})
    assert governor.votingPeriod() == 7 * 86400


def test_staked_and_bonded_pod_vote(governor, pod, stkpod, bonding, treasury, accounts):
    """Medium finding: only delegated POD could vote, so staking for buybacks or bonding to operate took an
    account out of governance; now its stkPOD (delegated) and its own active bond count at the share price."""
    holder = accounts[6]
    pod.transfer(holder, 3_000 * POD_UNIT, {"from": treasury})
    pod.delegate(holder, {"from": holder})
    stake_pod(pod, stkpod, treasury, holder, 2_000 * POD_UNIT)
    stkpod.delegate(holder, {"from": holder})
    bond_pod(pod, stkpod, bonding, treasury, holder, 5_000 * POD_UNIT)
    _sleep(1)
    moment = chain[-1].timestamp - 1
    assert governor.getVotes(holder, moment) == (3_000 + 2_000 + 5_000) * POD_UNIT
    # Nothing counts twice: the vault's and Bonding's own POD and stkPOD are not delegated.
    assert governor.getVotes(stkpod, moment) == governor.getVotes(bonding, moment) == 0


def test_a_staker_alone_can_pass_a_proposal(governor, params_registry, pod, stkpod, treasury, accounts):
    """Quorum 4% of 1e9 POD: a holder of 45M POD, all of it staked, reaches it with stkPOD votes alone."""
    staker = accounts[6]
    stake_pod(pod, stkpod, treasury, staker, 45_000_000 * POD_UNIT)
    stkpod.delegate(staker, {"from": staker})
    _sleep(1)
    calldata = params_registry.setParam.encode_input("full_weeks", 20)
    description = "A staker's proposal"
    proposal_id = _pass_and_queue(governor, staker, params_registry, calldata, description)
    assert governor.state(proposal_id) == QUEUED
    assert pod.getVotes(staker) == 0


def test_timelock_delay_is_bounded(DolphinTimelock, governor, timelock, voter, deployer):
    with brownie.reverts(revert_pattern=r"DolphinTimelockDelayOutOfBounds: .*"):
        DolphinTimelock.deploy(60, [], [brownie.ZERO_ADDRESS], deployer, {"from": deployer})
    with brownie.reverts(revert_pattern=r"TimelockUnauthorizedCaller: .*"):
        timelock.updateDelay(86400, {"from": voter})
    calldata = timelock.updateDelay.encode_input(31 * 86400)
    _pass_and_queue(governor, voter, timelock, calldata, "delay too long")
    _sleep(TIMELOCK_DELAY + 1)
    # The timelock bubbles the setter's own error up through the Governor.
    with brownie.reverts(revert_pattern=r"DolphinTimelockDelayOutOfBounds: .*"):
        governor.execute([timelock.address], [0], [calldata], keccak(text="delay too long"), {"from": voter})
    assert timelock.getMinDelay() == TIMELOCK_DELAY


def test_one_proposal_retunes_credits_buyback_and_distributor(
    Credits, Buyback, RewardsDistributor, governor, timelock, voter, stablecoin, pod, stkpod, bonding,
    validator_quorum, uniswap, pod_pair, deployer,
):  # fmt: skip
    """The timelock owns the parameters of every contract here: a single vote changes three of them."""
    credits = Credits.deploy(
        stablecoin, validator_quorum, deployer, 3 * 86400, 0, timelock, {"from": deployer}
    )
    buyback = Buyback.deploy(
        uniswap.router, stablecoin, pod, stkpod, timelock, 1800, 300, 10**10, {"from": deployer}
    )
    distributor = RewardsDistributor.deploy(
        pod, stkpod, bonding, validator_quorum, timelock, 86400, 1000, {"from": deployer}
    )
    targets = [credits, buyback, distributor]
    calldatas = [
        credits.setWithdrawalDelay.encode_input(7 * 86400),
        buyback.setDestination.encode_input(1),  # burn instead of vesting to stakers
        distributor.setBondBonusBps.encode_input(2500),
    ]
    description = "Retune credits, buyback and distributor"
    addresses = [t.address for t in targets]
    proposal_id = governor.propose(addresses, [0, 0, 0], calldatas, description, {"from": voter}).events[
        "ProposalCreated"
    ]["proposalId"]
    _sleep(VOTING_DELAY + 1)
    governor.castVote(proposal_id, FOR, {"from": voter})
    _sleep(VOTING_PERIOD + 1)
    governor.queue(addresses, [0, 0, 0], calldatas, keccak(text=description), {"from": voter})
    _sleep(TIMELOCK_DELAY + 1)
    governor.execute(addresses, [0, 0, 0], calldatas, keccak(text=description), {"from": voter})
    assert credits.withdrawalDelay() == 7 * 86400
    assert buyback.destination() == 1
    assert distributor.bondBonusBps() == 2500
    # Nobody else holds those powers.
    with brownie.reverts(revert_pattern=r"OwnableUnauthorizedAccount: .*"):
        credits.setWithdrawalDelay(86400, {"from": deployer})
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        buyback.setDestination(0, {"from": deployer})
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        distributor.setBondBonusBps(0, {"from": deployer})
