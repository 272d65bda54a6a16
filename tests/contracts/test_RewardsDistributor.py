"""RewardsDistributor: quorum-signed cumulative roots that also elect the next validator set, behind a
revocable delay; a pool solvent by construction; liquid and bonded claims chosen by the account alone."""

import brownie
import pytest
from brownie import chain
from eth_utils import keccak
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from chain.client import ValidatorSet
from chain.merkle import RewardsTree
from chain.quorum import epoch_root_digest, epoch_root_signature, quorum_order
from protocols import eth
from tests.contracts.conftest import (
    POD_UNIT,
    ChainStateMachine,
    current_set,
    genesis_weights,
    run_chain_state_machine,
    sign_typed,
)
from tests.examples import examples

ROOT_DELAY = 2 * 86400
BONUS_BPS = 1000
FUNDING = 1_000_000 * POD_UNIT
EPOCH_ROOT_FIELDS = [
    {"name": "epoch", "type": "uint256"},
    {"name": "root", "type": "bytes32"},
    {"name": "total", "type": "uint256"},
    {"name": "validators", "type": "address[]"},
    {"name": "weights", "type": "uint256[]"},
    {"name": "deadline", "type": "uint256"},
]
# Cross-part agreement: the type string validators sign (protocols/eth.py EPOCH_ROOT).
EPOCH_ROOT_TYPE = (
    "EpochRoot(uint256 epoch,bytes32 root,uint256 total,address[] validators,uint256[] weights,"
    "uint256 deadline)"
)
NONE, PENDING, REVOKED, ACTIVATED = 0, 1, 2, 3
STATUS = 4  # index of the status in proposedRoot's tuple


@pytest.fixture(scope="module")
def distributor(
    RewardsDistributor, pod, stkpod, bonding, validator_quorum, validators, rewards_pool, deployer
):
    distributor = RewardsDistributor.deploy(
        pod, stkpod, bonding, validator_quorum, deployer, ROOT_DELAY, BONUS_BPS, {"from": deployer}
    )
    validator_quorum.bindInstaller(distributor, {"from": deployer})
    pod.transfer(distributor, FUNDING, {"from": rewards_pool})
    return distributor


@pytest.fixture
def fresh_distributor(RewardsDistributor, ValidatorQuorum, pod, stkpod, bonding, quorum_params, validators,
                      deployer):  # fmt: skip
    """Makes unfunded distributors, each over a quorum of its own (same genesis) that it installs sets in."""

    def make():
        quorum = ValidatorQuorum.deploy(
            bonding, quorum_params, deployer, 2, 3, validators, genesis_weights(len(validators)),
            {"from": deployer},
        )  # fmt: skip
        for validator in validators:
            quorum.joinValidators({"from": validator})
        distributor = RewardsDistributor.deploy(
            pod, stkpod, bonding, quorum, deployer, ROOT_DELAY, BONUS_BPS, {"from": deployer}
        )
        quorum.bindInstaller(distributor, {"from": deployer})
        return distributor

    return make


@pytest.fixture(scope="module")
def earners(accounts):
    return [accounts[4], accounts[5], accounts[6]]


def tree_of(earners, amounts):
    return RewardsTree.build({str(a): x for a, x in zip(earners, amounts, strict=True)})


def quorum_of(distributor):
    """The ValidatorQuorum whose set signs `distributor`'s roots."""
    return brownie.project.get_loaded_projects()[0].ValidatorQuorum.at(distributor.quorum())


def message_of(distributor, epoch, tree, deadline=None, root=None, total=None, next_set=None):
    members, weights = next_set or current_set(quorum_of(distributor))
    return {
        "epoch": epoch,
        "root": tree.root if root is None else root,
        "total": tree.total if total is None else total,
        "validators": members,
        "weights": weights,
        "deadline": chain[-1].timestamp + 3600 if deadline is None else deadline,
    }


def as_tuple(message):
    return tuple(message[field["name"]] for field in EPOCH_ROOT_FIELDS)


def signed_by(distributor, signers, message):
    ordered = sorted(signers, key=lambda s: int(s.address, 16))
    return [sign_typed(s.private_key, distributor, "EpochRoot", EPOCH_ROOT_FIELDS, message) for s in ordered]


def propose(distributor, validators, epoch, tree, signers=None, **overrides):
    """Proposes `tree` for `epoch`, signed by 2+3+4 of 10 by default; the next set defaults to the current."""
    message = message_of(distributor, epoch, tree, **overrides)
    signers = validators[1:] if signers is None else signers
    # Relayed by a node-held account: after a chain revert (stateful test) Brownie reports a locally signed,
    # byte-identical transaction as "dropped", its hash being known already.
    tx = distributor.proposeRoot(
        as_tuple(message), signed_by(distributor, signers, message), {"from": brownie.accounts[0]}
    )
    return tx, message


def activate(distributor, epoch, message, sender=None):
    return distributor.activateRoot(
        epoch, message["validators"], message["weights"], {"from": sender or brownie.accounts[0]}
    )


def publish(distributor, validators, epoch, tree, **overrides):
    """Proposes, waits out the delay and activates: the normal life of a root."""
    _, message = propose(distributor, validators, epoch, tree, **overrides)
    _wait(ROOT_DELAY)
    return activate(distributor, epoch, message)


def proof_of(tree, account):
    return ["0x" + node.hex() for node in tree.proof(str(account))]


def _wait(seconds):
    chain.sleep(seconds)
    chain.mine()


# ---------------------------------------------------------------- roots


def test_typehash_is_the_agreed_type_string(distributor):
    assert distributor.EPOCH_ROOT_TYPEHASH() == "0x" + keccak(text=EPOCH_ROOT_TYPE).hex()
    assert eth.EPOCH_ROOT.type_string == EPOCH_ROOT_TYPE


def test_propose_then_activate_after_the_delay(distributor, validators, earners):
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    tx, message = propose(distributor, validators, 1, tree)
    event = tx.events["RootProposed"]
    assert event["activatesAt"] == tx.timestamp + ROOT_DELAY
    assert (list(event["validators"]), list(event["weights"])) == (message["validators"], message["weights"])
    proposed = distributor.proposedRoot(1)
    assert (proposed[0], proposed[1], proposed[STATUS]) == ("0x" + tree.root.hex(), tree.total, PENDING)
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootLocked: .*"):
        activate(distributor, 1, message, earners[0])
    _wait(ROOT_DELAY)
    activate(distributor, 1, message, earners[0])  # anyone may activate
    epoch, root, total = distributor.activeRoot()
    assert (epoch, root, total) == (1, "0x" + tree.root.hex(), tree.total)
    assert distributor.proposedRoot(1)[STATUS] == ACTIVATED


def test_propose_reverts(distributor, validators, earners):
    tree = tree_of(earners, [1, 2, 3])
    with brownie.reverts(revert_pattern=r"RewardsDistributorExpired: .*"):
        propose(distributor, validators, 1, tree, deadline=chain[-1].timestamp - 1)
    with brownie.reverts(revert_pattern=r"RewardsDistributorDeadlineTooFar: .*"):
        propose(distributor, validators, 1, tree, deadline=chain[-1].timestamp + 8 * 86400)
    with brownie.reverts("RewardsDistributorZeroValue: "):
        propose(distributor, validators, 1, tree, root=b"\x00" * 32)
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        propose(distributor, validators, 1, tree, signers=validators[:3])
    with brownie.reverts(revert_pattern=r"ValidatorQuorumSetNotAscending: .*"):
        members, weights = current_set(quorum_of(distributor))
        propose(distributor, validators, 1, tree, next_set=(members[::-1], weights[::-1]))
    _, message = propose(distributor, validators, 1, tree)
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochAlreadyProposed: .*"):
        propose(distributor, validators, 1, tree)
    _wait(ROOT_DELAY)
    activate(distributor, 1, message)
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochNotNewer: .*"):
        propose(distributor, validators, 0, tree)


def test_signed_terms_are_bound_to_the_signatures(distributor, validators, earners, accounts):
    tree = tree_of(earners, [1, 2, 3])
    message = message_of(distributor, 1, tree)
    signatures = signed_by(distributor, validators[1:], message)
    raised = as_tuple(dict(message, total=tree.total + 1))
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotReached|SignersNotAscending): .*"):
        distributor.proposeRoot(raised, signatures, {"from": validators[0]})
    # Swapping in another next set (a stranger for a member) breaks the signatures too.
    swapped = dict(message, validators=sorted([*message["validators"][1:], accounts[9].address],
                                              key=lambda a: int(a, 16)))  # fmt: skip
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotReached|SignersNotAscending): .*"):
        distributor.proposeRoot(as_tuple(swapped), signatures, {"from": validators[0]})


def test_activation_installs_the_signed_next_set(distributor, validator_quorum, validators, earners):
    """High finding: the set the contracts count changes only through an activated epoch root."""
    heavy = validators[2:]
    next_set = ([v.address for v in heavy], [validator_quorum.weightOf(v) for v in heavy])
    tree = tree_of(earners, [1, 2, 3])
    _, message = propose(distributor, validators, 1, tree, next_set=next_set)
    assert validator_quorum.validatorSetEpoch() == 0  # nothing changes on proposal
    # Activation must be given exactly the set that was signed.
    _wait(ROOT_DELAY)
    with brownie.reverts(revert_pattern=r"RewardsDistributorValidatorSetMismatch: .*"):
        distributor.activateRoot(1, *current_set(validator_quorum), {"from": earners[0]})
    tx = activate(distributor, 1, message)
    assert tx.events["ValidatorSetInstalled"]["epoch"] == 1
    assert current_set(validator_quorum) == next_set
    # The members left out can no longer sign the next root: 1 + 2 of the old set is not in the new one.
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        propose(distributor, validators, 2, tree_of(earners, [2, 3, 4]), signers=validators[:2])
    propose(distributor, validators, 2, tree_of(earners, [2, 3, 4]), signers=heavy)


def test_revoked_root_never_activates(distributor, validators, earners, deployer):
    tree = tree_of(earners, [1, 2, 3])
    _, message = propose(distributor, validators, 1, tree)
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        distributor.revokeRoot(1, {"from": earners[0]})
    tx = distributor.revokeRoot(1, {"from": deployer})
    assert tx.events["RootRevoked"]["epoch"] == 1
    _wait(ROOT_DELAY)
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        activate(distributor, 1, message, deployer)
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        distributor.revokeRoot(1, {"from": deployer})
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochAlreadyProposed: .*"):
        propose(distributor, validators, 1, tree)


def test_a_guardian_with_the_revoker_role_can_revoke(distributor, validators, earners, deployer, accounts):
    guardian = accounts[9]
    distributor.grantRole(distributor.REVOKER_ROLE(), guardian, {"from": deployer})
    propose(distributor, validators, 1, tree_of(earners, [1, 2, 3]))
    distributor.revokeRoot(1, {"from": guardian})
    assert distributor.proposedRoot(1)[STATUS] == REVOKED


def test_activate_reverts(distributor, validators, earners):
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        distributor.activateRoot(9, [], [], {"from": earners[0]})
    _, first = propose(distributor, validators, 1, tree_of(earners, [10, 20, 30]))
    _, second = propose(distributor, validators, 2, tree_of(earners, [11, 21, 31]))
    _wait(ROOT_DELAY)
    activate(distributor, 2, second, earners[0])
    # Epoch 1 is superseded by the cumulative epoch 2 and can no longer become active.
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochNotNewer: .*"):
        activate(distributor, 1, first, earners[0])
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        activate(distributor, 2, second, earners[0])


def test_cumulative_total_never_decreases(distributor, validators, earners):
    publish(distributor, validators, 1, tree_of(earners, [10, 20, 30]))
    _, message = propose(distributor, validators, 2, tree_of(earners, [10, 20, 29]))
    _wait(ROOT_DELAY)
    with brownie.reverts(revert_pattern=r"RewardsDistributorTotalDecreased: .*"):
        activate(distributor, 2, message, earners[0])


def test_a_root_the_pool_cannot_pay_does_not_activate(
    fresh_distributor, pod, validators, earners, rewards_pool
):
    """Medium finding: the pool could run dry. A root activates only when the pool holds what it owes."""
    thin = fresh_distributor()
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    pod.transfer(thin, tree.total - 1, {"from": rewards_pool})
    _, message = propose(thin, validators, 1, tree)
    _wait(ROOT_DELAY)
    with brownie.reverts(revert_pattern=r"RewardsDistributorUnderfunded: .*"):
        activate(thin, 1, message)
    pod.transfer(thin, 1, {"from": rewards_pool})
    activate(thin, 1, message)
    assert thin.unreservedBalance() == 0


def test_a_root_signed_as_validators_sign_it_is_accepted(distributor, validator_quorum, validators, earners):
    """Cross-part check: the one signer of epoch roots (chain.quorum, what the validator daemon and
    `dolphin chain root sign` use) and the distributor hash EpochRoot alike."""
    assert distributor.EPOCH_ROOT_TYPEHASH() == "0x" + eth.EPOCH_ROOT.type_hash.hex()
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    members, weights = current_set(validator_quorum)
    next_set = ValidatorSet(tuple(members), tuple(weights))
    deadline = chain[-1].timestamp + 3600
    domain = eth.TypedDomain("Dolphin Network", "1", chain.id, bytes.fromhex(distributor.address[2:]))
    signed = [
        epoch_root_signature(
            eth.EthAccount(bytes.fromhex(v.private_key[2:])), domain, 4, tree, deadline, next_set
        )
        for v in validators[1:]
    ]
    proposal = (4, tree.root, tree.total, members, weights, deadline)
    assert bytes(distributor.epochRootDigest(proposal)) == epoch_root_digest(
        domain, 4, tree, deadline, next_set
    )
    distributor.proposeRoot(
        proposal, quorum_order({s.validator: s.signature for s in signed}), {"from": earners[0]}
    )
    assert distributor.proposedRoot(4)[STATUS] == PENDING


# ---------------------------------------------------------------- claims


def test_claim_liquid_pays_and_a_replay_pays_zero(distributor, pod, validators, earners):
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, tree)
    account = earners[1]
    tx = distributor.claim(20 * POD_UNIT, proof_of(tree, account), {"from": account})
    assert tx.return_value == 20 * POD_UNIT
    assert pod.balanceOf(account) == 20 * POD_UNIT
    assert distributor.claimedOf(account) == 20 * POD_UNIT
    assert tx.events["Claimed"]["amount"] == 20 * POD_UNIT

    replay = distributor.claim(20 * POD_UNIT, proof_of(tree, account), {"from": account})
    assert replay.return_value == 0
    assert "Claimed" not in replay.events
    assert pod.balanceOf(account) == 20 * POD_UNIT
    assert pod.balanceOf(distributor) == FUNDING - 20 * POD_UNIT


def test_nobody_can_claim_for_an_account_or_choose_its_path(distributor, bonding, validators, earners):
    """Medium finding: `claim(account, ...)` let anyone force a liquid payout and deny the bonded bonus."""
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, tree)
    victim, attacker = earners[0], earners[1]
    # The proof is for the victim's leaf; the contract reads the claimant from msg.sender only.
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(10 * POD_UNIT, proof_of(tree, victim), {"from": attacker})
    assert distributor.claimedOf(victim) == 0
    tx = distributor.claimBonded(10 * POD_UNIT, proof_of(tree, victim), {"from": victim})
    assert tx.events["ClaimedBonded"]["bonus"] == POD_UNIT
    assert bonding.activeBondOf(victim) > 0


def test_next_root_pays_only_the_difference(distributor, pod, validators, earners):
    first = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, first)
    distributor.claim(10 * POD_UNIT, proof_of(first, earners[0]), {"from": earners[0]})
    second = tree_of(earners, [15 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 2, second)
    # The old proof no longer matches the active root.
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(10 * POD_UNIT, proof_of(first, earners[0]), {"from": earners[0]})
    tx = distributor.claim(15 * POD_UNIT, proof_of(second, earners[0]), {"from": earners[0]})
    assert tx.return_value == 5 * POD_UNIT
    assert pod.balanceOf(earners[0]) == 15 * POD_UNIT
    # An account that skipped epoch 1 collects everything at once.
    tx = distributor.claim(30 * POD_UNIT, proof_of(second, earners[2]), {"from": earners[2]})
    assert tx.return_value == 30 * POD_UNIT


def test_claim_with_a_wrong_amount_reverts(distributor, validators, earners):
    tree = tree_of(earners, [10, 20, 30])
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(10, proof_of(tree, earners[0]), {"from": earners[0]})  # no active root
    publish(distributor, validators, 1, tree)
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(11, proof_of(tree, earners[0]), {"from": earners[0]})


def test_claims_never_pay_past_the_signed_total(distributor, pod, validators, earners):
    """Medium finding: a root's signed total was not enforced, so a tree whose leaves add up to more than
    the total (a settler's bug, or a quorum's lie about the total) could drain the pool."""
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, tree, total=40 * POD_UNIT)
    distributor.claim(30 * POD_UNIT, proof_of(tree, earners[2]), {"from": earners[2]})
    with brownie.reverts(revert_pattern=r"RewardsDistributorTotalExceeded: .*"):
        distributor.claim(20 * POD_UNIT, proof_of(tree, earners[1]), {"from": earners[1]})
    distributor.claim(10 * POD_UNIT, proof_of(tree, earners[0]), {"from": earners[0]})
    assert distributor.totalClaimed() == 40 * POD_UNIT


def test_claim_bonded_stakes_and_bonds_with_bonus(distributor, pod, stkpod, bonding, validators, earners):
    tree = tree_of(earners, [1_000 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, tree)
    account = earners[0]
    expected_shares = stkpod.previewDeposit(1_100 * POD_UNIT)
    tx = distributor.claimBonded(1_000 * POD_UNIT, proof_of(tree, account), {"from": account})
    assert tx.return_value == 1_000 * POD_UNIT
    event = tx.events["ClaimedBonded"]
    assert (event["amount"], event["bonus"], event["shares"]) == (
        1_000 * POD_UNIT,
        100 * POD_UNIT,
        expected_shares,
    )
    assert bonding.activeBondOf(account) == expected_shares
    assert pod.balanceOf(account) == 0
    assert stkpod.balanceOf(distributor) == 0
    assert pod.balanceOf(distributor) == FUNDING - 1_100 * POD_UNIT
    # The bonus is not part of the cumulative amount.
    assert distributor.claimedOf(account) == 1_000 * POD_UNIT
    assert distributor.totalBonus() == 100 * POD_UNIT

    replay = distributor.claimBonded(1_000 * POD_UNIT, proof_of(tree, account), {"from": account})
    assert replay.return_value == 0
    assert bonding.activeBondOf(account) == expected_shares


def test_the_bonus_comes_only_from_what_is_not_owed(
    fresh_distributor, pod, validators, earners, rewards_pool
):
    """Medium finding: bonuses were paid from the pool outside the cumulative totals, so bonded claims could
    leave later claimants unpaid. Here the pool holds what the root owes plus 1 POD."""
    tight = fresh_distributor()
    tree = tree_of(earners, [100 * POD_UNIT, 200 * POD_UNIT, 300 * POD_UNIT])
    pod.transfer(tight, tree.total + POD_UNIT, {"from": rewards_pool})
    publish(tight, validators, 1, tree)
    assert tight.unreservedBalance() == POD_UNIT
    first = tight.claimBonded(300 * POD_UNIT, proof_of(tree, earners[2]), {"from": earners[2]})
    assert first.events["ClaimedBonded"]["bonus"] == POD_UNIT  # 30 POD nominal, 1 POD available
    second = tight.claimBonded(200 * POD_UNIT, proof_of(tree, earners[1]), {"from": earners[1]})
    assert second.events["ClaimedBonded"]["bonus"] == 0
    assert tight.claim(100 * POD_UNIT, proof_of(tree, earners[0]), {"from": earners[0]}).return_value == (
        100 * POD_UNIT
    )
    assert pod.balanceOf(tight) == 0


# ---------------------------------------------------------------- governance


def test_settings_are_bounded_and_admin_only(distributor, deployer, earners):
    for delay in (3599, 14 * 86400 + 1):
        with brownie.reverts(revert_pattern=r"RewardsDistributorSettingOutOfBounds: .*"):
            distributor.setRootDelay(delay, {"from": deployer})
    with brownie.reverts(revert_pattern=r"RewardsDistributorSettingOutOfBounds: .*"):
        distributor.setBondBonusBps(5001, {"from": deployer})
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        distributor.setRootDelay(3600, {"from": earners[0]})
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        distributor.setBondBonusBps(0, {"from": earners[0]})
    distributor.setRootDelay(3600, {"from": deployer})
    distributor.setBondBonusBps(0, {"from": deployer})
    assert (distributor.rootDelay(), distributor.bondBonusBps()) == (3600, 0)


def test_constructor_refuses_zero_addresses(RewardsDistributor, pod, stkpod, bonding, deployer):
    with brownie.reverts("RewardsDistributorZeroValue: "):
        RewardsDistributor.deploy(
            pod, stkpod, bonding, brownie.ZERO_ADDRESS, deployer, ROOT_DELAY, BONUS_BPS, {"from": deployer}
        )


# ---------------------------------------------------------------- stateful: claims never exceed what is owed

EARNER = st.integers(min_value=0, max_value=2)
st_increment = st.integers(min_value=0, max_value=1_000 * POD_UNIT)


class ClaimsBounded(ChainStateMachine):
    """Random epochs (cumulative amounts only grow, some signed with a total below their leaves' sum), a pool
    topped up to exactly what it owes plus a random margin, liquid and bonded claims, and replays.

    Invariants: claimed <= cumulative of the active root for every account and never decreases; the total
    claimed never passes the active root's signed total; the pool always holds what the active root still
    owes (bonuses included, it is solvent); a replayed claim pays 0; the POD that left equals what was
    claimed plus bonuses.
    """

    def __init__(self):
        super().__init__()
        self.cumulative = [0, 0, 0]
        self.tree = None
        self.total = 0
        self.epoch = 0
        self.claimed = [0, 0, 0]
        self.seen = [0, 0, 0]
        self.funded = self.pod.balanceOf(self.distributor)

    @rule(
        increments=st.lists(st_increment, min_size=3, max_size=3),
        shortfall=st.integers(min_value=0, max_value=500 * POD_UNIT),
        margin=st.sampled_from([0, POD_UNIT, 100 * POD_UNIT]),
    )
    def close_epoch(self, increments, shortfall, margin):
        self.epoch += 1
        cumulative = [c + i for c, i in zip(self.cumulative, increments, strict=True)]
        tree = tree_of(self.earners, cumulative)
        # The signed total may be below the leaves' sum (never below the previous total).
        total = max(self.total, tree.total - shortfall)
        owed = total - self.distributor.totalClaimed()
        top_up = max(0, owed - self.pod.balanceOf(self.distributor)) + margin
        if top_up:
            self.pod.transfer(self.distributor, top_up, {"from": self.rewards_pool})
            self.funded += top_up
        publish(self.distributor, self.validators, self.epoch, tree, total=total)
        self.cumulative, self.tree, self.total = cumulative, tree, total

    @rule(earner=EARNER, bonded=st.booleans())
    def claim(self, earner, bonded):
        account = self.earners[earner]
        if self.tree is None:
            with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
                self.distributor.claim(0, [], {"from": account})
            return
        amount, proof = self.cumulative[earner], proof_of(self.tree, account)
        owed = amount - self.claimed[earner]
        if owed > 0 and self.distributor.totalClaimed() + owed > self.total:
            with brownie.reverts(revert_pattern=r"RewardsDistributorTotalExceeded: .*"):
                self._claim(account, amount, proof, bonded)
            return
        assert self._paid(self._claim(account, amount, proof, bonded)) == max(0, owed)
        self.claimed[earner] = max(self.claimed[earner], amount)

    @precondition(lambda self: self.tree is not None)
    @rule(earner=EARNER, bonded=st.booleans())
    def replay_claim(self, earner, bonded):
        account = self.earners[earner]
        self.claim(earner, bonded)
        if self.claimed[earner] == self.cumulative[earner]:
            amount, proof = self.cumulative[earner], proof_of(self.tree, account)
            assert self._paid(self._claim(account, amount, proof, bonded)) == 0

    def _claim(self, account, amount, proof, bonded):
        if bonded:
            return self.distributor.claimBonded(amount, proof, {"from": account})
        return self.distributor.claim(amount, proof, {"from": account})

    @staticmethod
    def _paid(tx):
        """What a claim paid, read from its event (no event: it paid nothing)."""
        for name in ("Claimed", "ClaimedBonded"):
            if name in tx.events:
                return tx.events[name]["amount"]
        return 0

    @invariant()
    def claims_are_bounded_and_monotonic(self):
        claimed = [self.distributor.claimedOf(a) for a in self.earners]
        assert claimed == self.claimed
        assert all(c <= cum for c, cum in zip(claimed, self.cumulative, strict=True))
        assert all(c >= seen for c, seen in zip(claimed, self.seen, strict=True))
        self.seen = claimed
        assert self.distributor.totalClaimed() == sum(claimed) <= self.total

    @invariant()
    def pool_is_solvent(self):
        total_claimed, bonus = self.distributor.totalClaimed(), self.distributor.totalBonus()
        balance = self.pod.balanceOf(self.distributor)
        assert balance == self.funded - total_claimed - bonus
        assert balance >= self.distributor.activeRoot()[2] - total_claimed


@pytest.mark.slow
def test_stateful_claims_are_bounded_and_the_pool_solvent(fresh_distributor, pod, validators, earners,
                                                          rewards_pool):  # fmt: skip
    tight = fresh_distributor()
    machine = ClaimsBounded.bind(
        distributor=tight, pod=pod, validators=validators, earners=earners, rewards_pool=rewards_pool
    )
    run_chain_state_machine(machine, max_examples=examples(25), steps=15)
