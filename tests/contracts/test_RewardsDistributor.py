"""RewardsDistributor: quorum-signed cumulative roots behind a revocable delay; liquid and bonded claims."""

import brownie
import pytest
from brownie import chain
from eth_utils import keccak
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from chain.merkle import RewardsTree
from protocols import eth
from tests.contracts.conftest import POD_UNIT, ChainStateMachine, run_chain_state_machine, sign_typed

ROOT_DELAY = 2 * 86400
BONUS_BPS = 1000
FUNDING = 1_000_000 * POD_UNIT
EPOCH_ROOT_FIELDS = [
    {"name": "epoch", "type": "uint256"},
    {"name": "root", "type": "bytes32"},
    {"name": "total", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
# Cross-part agreement (crosspart.md): the type string validators sign.
EPOCH_ROOT_TYPE = "EpochRoot(uint256 epoch,bytes32 root,uint256 total,uint256 deadline)"
NONE, PENDING, REVOKED, ACTIVATED = 0, 1, 2, 3


@pytest.fixture(scope="module")
def distributor(
    RewardsDistributor, pod, stkpod, bonding, validator_quorum, validators, rewards_pool, deployer
):
    distributor = RewardsDistributor.deploy(
        pod, stkpod, bonding, validator_quorum, deployer, ROOT_DELAY, BONUS_BPS, {"from": deployer}
    )
    pod.transfer(distributor, FUNDING, {"from": rewards_pool})
    return distributor


@pytest.fixture(scope="module")
def earners(accounts):
    return [accounts[4], accounts[5], accounts[6]]


def tree_of(earners, amounts):
    return RewardsTree.build({str(a): x for a, x in zip(earners, amounts, strict=True)})


def propose(distributor, validators, epoch, tree, deadline=None, signers=None, root=None, total=None):
    root = tree.root if root is None else root
    total = tree.total if total is None else total
    deadline = chain[-1].timestamp + 3600 if deadline is None else deadline
    signers = validators[1:] if signers is None else signers  # weights 2+3+4 of 10: above two thirds
    message = {"epoch": epoch, "root": root, "total": total, "deadline": deadline}
    signatures = [
        sign_typed(s.private_key, distributor, "EpochRoot", EPOCH_ROOT_FIELDS, message) for s in signers
    ]
    # Relayed by a node-held account: after a chain revert (stateful test) Brownie reports a locally signed,
    # byte-identical transaction as "dropped", its hash being known already.
    return distributor.proposeRoot(epoch, root, total, deadline, signatures, {"from": brownie.accounts[0]})


def publish(distributor, validators, epoch, tree):
    """Proposes, waits out the delay and activates: the normal life of a root."""
    propose(distributor, validators, epoch, tree)
    _wait(ROOT_DELAY)
    distributor.activateRoot(epoch, {"from": brownie.accounts[0]})


def proof_of(tree, account):
    return ["0x" + node.hex() for node in tree.proof(str(account))]


def _wait(seconds):
    chain.sleep(seconds)
    chain.mine()


# ---------------------------------------------------------------- roots


def test_typehash_is_the_agreed_type_string(distributor):
    assert distributor.EPOCH_ROOT_TYPEHASH() == "0x" + keccak(text=EPOCH_ROOT_TYPE).hex()


def test_propose_then_activate_after_the_delay(distributor, validators, earners):
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    tx = propose(distributor, validators, 1, tree)
    assert tx.events["RootProposed"]["activatesAt"] == tx.timestamp + ROOT_DELAY
    proposed = distributor.proposedRoot(1)
    assert (proposed[0], proposed[1], proposed[3]) == ("0x" + tree.root.hex(), tree.total, PENDING)
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootLocked: .*"):
        distributor.activateRoot(1, {"from": earners[0]})
    _wait(ROOT_DELAY)
    distributor.activateRoot(1, {"from": earners[0]})  # anyone may activate
    epoch, root, total = distributor.activeRoot()
    assert (epoch, root, total) == (1, "0x" + tree.root.hex(), tree.total)
    assert distributor.proposedRoot(1)[3] == ACTIVATED


def test_propose_reverts(distributor, validators, earners):
    tree = tree_of(earners, [1, 2, 3])
    with brownie.reverts(revert_pattern=r"RewardsDistributorExpired: .*"):
        propose(distributor, validators, 1, tree, deadline=chain[-1].timestamp - 1)
    with brownie.reverts("RewardsDistributorZeroValue: "):
        propose(distributor, validators, 1, tree, root=b"\x00" * 32)
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        propose(distributor, validators, 1, tree, signers=validators[:3])
    propose(distributor, validators, 1, tree)
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochAlreadyProposed: .*"):
        propose(distributor, validators, 1, tree)
    _wait(ROOT_DELAY)
    distributor.activateRoot(1, {"from": validators[0]})
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochNotNewer: .*"):
        propose(distributor, validators, 0, tree)


def test_signed_total_is_bound_to_the_signature(distributor, validators, earners):
    tree = tree_of(earners, [1, 2, 3])
    deadline = chain[-1].timestamp + 3600
    message = {"epoch": 1, "root": tree.root, "total": tree.total, "deadline": deadline}
    signatures = [
        sign_typed(s.private_key, distributor, "EpochRoot", EPOCH_ROOT_FIELDS, message)
        for s in validators[1:]
    ]
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotValidator|SignersNotAscending): .*"):
        distributor.proposeRoot(1, tree.root, tree.total + 1, deadline, signatures, {"from": validators[0]})


def test_revoked_root_never_activates(distributor, validators, earners, deployer):
    tree = tree_of(earners, [1, 2, 3])
    propose(distributor, validators, 1, tree)
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        distributor.revokeRoot(1, {"from": earners[0]})
    tx = distributor.revokeRoot(1, {"from": deployer})
    assert tx.events["RootRevoked"]["epoch"] == 1
    _wait(ROOT_DELAY)
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        distributor.activateRoot(1, {"from": deployer})
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        distributor.revokeRoot(1, {"from": deployer})
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochAlreadyProposed: .*"):
        propose(distributor, validators, 1, tree)


def test_a_guardian_with_the_revoker_role_can_revoke(distributor, validators, earners, deployer, accounts):
    guardian = accounts[9]
    distributor.grantRole(distributor.REVOKER_ROLE(), guardian, {"from": deployer})
    propose(distributor, validators, 1, tree_of(earners, [1, 2, 3]))
    distributor.revokeRoot(1, {"from": guardian})
    assert distributor.proposedRoot(1)[3] == REVOKED


def test_activate_reverts(distributor, validators, earners):
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        distributor.activateRoot(9, {"from": earners[0]})
    first = tree_of(earners, [10, 20, 30])
    second = tree_of(earners, [11, 21, 31])
    propose(distributor, validators, 1, first)
    propose(distributor, validators, 2, second)
    _wait(ROOT_DELAY)
    distributor.activateRoot(2, {"from": earners[0]})
    # Epoch 1 is superseded by the cumulative epoch 2 and can no longer become active.
    with brownie.reverts(revert_pattern=r"RewardsDistributorEpochNotNewer: .*"):
        distributor.activateRoot(1, {"from": earners[0]})
    with brownie.reverts(revert_pattern=r"RewardsDistributorRootNotPending: .*"):
        distributor.activateRoot(2, {"from": earners[0]})


def test_cumulative_total_never_decreases(distributor, validators, earners):
    publish(distributor, validators, 1, tree_of(earners, [10, 20, 30]))
    propose(distributor, validators, 2, tree_of(earners, [10, 20, 29]))
    _wait(ROOT_DELAY)
    with brownie.reverts(revert_pattern=r"RewardsDistributorTotalDecreased: .*"):
        distributor.activateRoot(2, {"from": earners[0]})


def test_root_signed_by_the_protocols_module_is_accepted(distributor, validators, earners):
    """Cross-part check: protocols.eth and chain.merkle (what settlers use) agree with the distributor."""
    assert distributor.EPOCH_ROOT_TYPEHASH() == "0x" + eth.EPOCH_ROOT.type_hash.hex()
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    deadline = chain[-1].timestamp + 3600
    values = {"epoch": 4, "root": tree.root, "total": tree.total, "deadline": deadline}
    domain = eth.TypedDomain("Dolphin Network", "1", chain.id, bytes.fromhex(distributor.address[2:]))
    signatures = eth.quorum_order(
        {
            bytes.fromhex(v.address[2:]): eth.EthAccount(bytes.fromhex(v.private_key[2:])).sign_typed(
                domain, eth.EPOCH_ROOT, values
            )
            for v in validators[1:]
        }
    )
    distributor.proposeRoot(4, tree.root, tree.total, deadline, signatures, {"from": earners[0]})
    assert distributor.proposedRoot(4)[3] == PENDING


# ---------------------------------------------------------------- claims


def test_claim_liquid_pays_and_a_replay_pays_zero(distributor, pod, validators, earners):
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, tree)
    account = earners[1]
    tx = distributor.claim(account, 20 * POD_UNIT, proof_of(tree, account), {"from": earners[0]})
    assert tx.return_value == 20 * POD_UNIT
    assert pod.balanceOf(account) == 20 * POD_UNIT
    assert distributor.claimedOf(account) == 20 * POD_UNIT
    assert tx.events["Claimed"]["amount"] == 20 * POD_UNIT

    replay = distributor.claim(account, 20 * POD_UNIT, proof_of(tree, account), {"from": account})
    assert replay.return_value == 0
    assert "Claimed" not in replay.events
    assert pod.balanceOf(account) == 20 * POD_UNIT
    assert pod.balanceOf(distributor) == FUNDING - 20 * POD_UNIT


def test_next_root_pays_only_the_difference(distributor, pod, validators, earners):
    first = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, first)
    distributor.claim(earners[0], 10 * POD_UNIT, proof_of(first, earners[0]), {"from": earners[0]})
    second = tree_of(earners, [15 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 2, second)
    # The old proof no longer matches the active root.
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(earners[0], 10 * POD_UNIT, proof_of(first, earners[0]), {"from": earners[0]})
    tx = distributor.claim(earners[0], 15 * POD_UNIT, proof_of(second, earners[0]), {"from": earners[0]})
    assert tx.return_value == 5 * POD_UNIT
    assert pod.balanceOf(earners[0]) == 15 * POD_UNIT
    # An account that skipped epoch 1 collects everything at once.
    tx = distributor.claim(earners[2], 30 * POD_UNIT, proof_of(second, earners[2]), {"from": earners[2]})
    assert tx.return_value == 30 * POD_UNIT


def test_claim_with_a_wrong_amount_or_account_reverts(distributor, validators, earners, accounts):
    tree = tree_of(earners, [10, 20, 30])
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(earners[0], 10, proof_of(tree, earners[0]), {"from": earners[0]})  # no active root
    publish(distributor, validators, 1, tree)
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(earners[0], 11, proof_of(tree, earners[0]), {"from": earners[0]})
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claim(accounts[9], 10, proof_of(tree, earners[0]), {"from": accounts[9]})


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
    assert (
        distributor.claimedOf(account) == 1_000 * POD_UNIT
    )  # the bonus is not part of the cumulative amount
    assert distributor.totalBonus() == 100 * POD_UNIT

    replay = distributor.claimBonded(1_000 * POD_UNIT, proof_of(tree, account), {"from": account})
    assert replay.return_value == 0
    assert bonding.activeBondOf(account) == expected_shares


def test_claim_bonded_is_for_the_caller_only(distributor, validators, earners, bonding):
    tree = tree_of(earners, [10 * POD_UNIT, 20 * POD_UNIT, 30 * POD_UNIT])
    publish(distributor, validators, 1, tree)
    # Someone else's proof proves nothing for the caller's address.
    with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
        distributor.claimBonded(10 * POD_UNIT, proof_of(tree, earners[0]), {"from": earners[1]})
    assert bonding.activeBondOf(earners[0]) == 0


def test_claim_beyond_funding_reverts(RewardsDistributor, pod, stkpod, bonding, validator_quorum, validators,
                                      earners, deployer):  # fmt: skip
    empty = RewardsDistributor.deploy(
        pod, stkpod, bonding, validator_quorum, deployer, ROOT_DELAY, BONUS_BPS, {"from": deployer}
    )
    tree = tree_of(earners, [10, 20, 30])
    publish(empty, validators, 1, tree)
    with brownie.reverts(revert_pattern=r"ERC20InsufficientBalance: .*"):
        empty.claim(earners[0], 10, proof_of(tree, earners[0]), {"from": earners[0]})
    assert empty.claimedOf(earners[0]) == 0


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


class ClaimsBounded(ChainStateMachine):
    """Random epochs (cumulative amounts only grow), liquid and bonded claims, and replayed claims.

    Invariants: claimed <= cumulative of the active root for every account; claimed never decreases; a
    replayed claim pays 0; the POD that left equals what was claimed plus bonuses.
    """

    def __init__(self):
        super().__init__()
        self.cumulative = [0, 0, 0]
        self.tree = None
        self.epoch = 0
        self.claimed = [0, 0, 0]
        self.seen = [0, 0, 0]

    @rule(increments=st.lists(st.integers(min_value=0, max_value=1_000 * POD_UNIT), min_size=3, max_size=3))
    def close_epoch(self, increments):
        self.epoch += 1
        cumulative = [c + i for c, i in zip(self.cumulative, increments, strict=True)]
        tree = tree_of(self.earners, cumulative)
        publish(self.distributor, self.validators, self.epoch, tree)
        self.cumulative, self.tree = cumulative, tree

    @rule(earner=EARNER, bonded=st.booleans())
    def claim(self, earner, bonded):
        account = self.earners[earner]
        if self.tree is None:
            with brownie.reverts(revert_pattern=r"RewardsDistributorInvalidProof: .*"):
                self.distributor.claim(account, 0, [], {"from": account})
            return
        amount, proof = self.cumulative[earner], proof_of(self.tree, account)
        paid = self._paid(self._claim(account, amount, proof, bonded))
        assert paid == self.cumulative[earner] - self.claimed[earner]
        self.claimed[earner] = self.cumulative[earner]

    @precondition(lambda self: self.tree is not None)
    @rule(earner=EARNER, bonded=st.booleans())
    def replay_claim(self, earner, bonded):
        account = self.earners[earner]
        amount, proof = self.cumulative[earner], proof_of(self.tree, account)
        self.claim(earner, bonded)
        assert self._paid(self._claim(account, amount, proof, bonded)) == 0

    def _claim(self, account, amount, proof, bonded):
        if bonded:
            return self.distributor.claimBonded(amount, proof, {"from": account})
        return self.distributor.claim(account, amount, proof, {"from": account})

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
        total_claimed = self.distributor.totalClaimed()
        assert total_claimed == sum(claimed)
        assert self.pod.balanceOf(self.distributor) == FUNDING - total_claimed - self.distributor.totalBonus()


@pytest.mark.slow
def test_stateful_claims_are_bounded(distributor, pod, validators, earners):
    machine = ClaimsBounded.bind(distributor=distributor, pod=pod, validators=validators, earners=earners)
    run_chain_state_machine(machine, max_examples=60, steps=15)
