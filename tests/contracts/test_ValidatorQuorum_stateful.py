"""ValidatorQuorum as a state machine: bonds, unbonds, opting in and out, rewards moving the share price,
elected sets installed at epoch boundaries, and quorum checks by any signers, strangers among them, with or
without the member being judged.

Invariants: the set and its weights change only by installation, which keeps exactly the named members that
joined and hold the minimum, each weight capped at its bond at that moment; the set is ascending and its
total is the sum of its weights; a check passes exactly when the counted members' weight reaches two thirds
(`signed * 3 >= total * 2`), where a stranger or a replaced member counts nothing and the judged member
counts in neither the total nor the signed weight.
"""

import brownie
from eth_account import Account
from eth_utils import keccak
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from tests.contracts.conftest import (
    MIN_VALIDATOR_BOND,
    POD_UNIT,
    ChainStateMachine,
    current_set,
    run_chain_state_machine,
)
from tests.examples import examples

DAY = 86400
ACTORS = 6

st_actor = st.integers(min_value=0, max_value=ACTORS - 1)
st_amount = st.integers(min_value=1_000 * POD_UNIT, max_value=300_000 * POD_UNIT)
st_bps = st.integers(min_value=1, max_value=10_000)
st_choice = st.lists(st.booleans(), min_size=ACTORS, max_size=ACTORS)
st_judged = st.sampled_from([None, *range(ACTORS)])


class QuorumMachine(ChainStateMachine):
    """Bound by the test to pod, stkpod, bonding, quorum, installer, treasury and actors (keyed wallets)."""

    installs = checks_passed = 0  # over the whole run: proves both outcomes are exercised

    def __init__(self):
        super().__init__()
        members, weights = current_set(self.quorum)
        self.set = dict(zip(members, weights, strict=True))
        self.counted = dict(self.set)  # the weights a quorum check counts (held ones during a wait)
        self.epoch = self.quorum.validatorSetEpoch()
        self.joined = {a.address: self.quorum.hasJoined(a) for a in self.actors}
        self.digest_counter = 0

    @initialize()
    def carry_the_set_forward(self):
        """Each example starts as a running network goes on: a root re-elects the genesis set (an install)
        and everyone signs a check (one that passes). The drawn rules may do neither: a whole run of them
        once did not install a set at all, which left the installation untested."""
        self.install([account.address in self.set for account in self.actors], [2] * ACTORS)
        self._check([True] * ACTORS, False, None)

    def _bond_value(self, address):
        return self.bonding.bondValueInPOD(address)

    @rule(actor=st_actor, amount=st_amount)
    def bond(self, actor, amount):
        account = self.actors[actor]
        shares = self.stkpod.deposit(amount, account, {"from": account}).return_value
        self.bonding.bond(shares, {"from": account})

    @rule(actor=st_actor, bps=st_bps)
    def unbond(self, actor, bps):
        account = self.actors[actor]
        shares = self.bonding.activeBondOf(account) * bps // 10_000
        if shares:
            self.bonding.requestUnbond(shares, {"from": account})

    @rule(actor=st_actor)
    def join(self, actor):
        account = self.actors[actor]
        if self.joined[account.address]:
            with brownie.reverts(revert_pattern=r"ValidatorQuorumMembershipUnchanged: .*"):
                self.quorum.joinValidators({"from": account})
        elif self._bond_value(account) < self.quorum.minValidatorBond():
            with brownie.reverts(revert_pattern=r"ValidatorQuorumBelowMinimumBond: .*"):
                self.quorum.joinValidators({"from": account})
        else:
            self.quorum.joinValidators({"from": account})
            self.joined[account.address] = True

    @rule(actor=st_actor)
    def leave(self, actor):
        account = self.actors[actor]
        if not self.joined[account.address]:
            with brownie.reverts(revert_pattern=r"ValidatorQuorumMembershipUnchanged: .*"):
                self.quorum.leaveValidators({"from": account})
            return
        self.quorum.leaveValidators({"from": account})
        self.joined[account.address] = False

    @rule(amount=st.integers(min_value=POD_UNIT, max_value=1_000_000 * POD_UNIT))
    def share_price_rises(self, amount):
        """Rewards vest: bonds grow in POD-worth, elected weights do not move (no live refresh)."""
        self.stkpod.notifyRewards(amount, {"from": self.treasury})
        brownie.chain.sleep(7 * DAY)
        brownie.chain.mine()
        self.counted = dict(self.set)  # past SET_CHANGE_WAIT: the new set's weight counts in full

    @rule(
        chosen=st_choice,
        factors=st.lists(st.sampled_from([1, 2, 3, 4]), min_size=ACTORS, max_size=ACTORS),
    )
    def install(self, chosen, factors):
        """A root elected the chosen actors, asking weight = bond * factor / 2 (half, equal, more)."""
        named = sorted(
            (a for a, pick in zip(self.actors, chosen, strict=True) if pick), key=lambda a: int(a.address, 16)
        )
        if not named:
            return
        minimum = self.quorum.minValidatorBond()
        asked, expected = [], {}
        for account in named:
            bond = self.bonding.activeBondOf(account)
            weight = max(1, bond * factors[self.actors.index(account)] // 2)
            asked.append(weight)
            if self.joined[account.address] and self._bond_value(account) >= minimum:
                expected[account.address] = min(weight, bond)
        expected = {a: w for a, w in expected.items() if w}
        members = [a.address for a in named]
        if not expected:
            with brownie.reverts(revert_pattern=r"ValidatorQuorumNoEligibleMember: .*"):
                self.quorum.installValidatorSet(self.epoch + 1, members, asked, {"from": self.installer})
            return
        self.quorum.installValidatorSet(self.epoch + 1, members, asked, {"from": self.installer})
        self.epoch += 1
        # Until SET_CHANGE_WAIT passes a check counts what each member held in the set before, at most.
        self.counted = {a: min(w, self.set.get(a, 0)) for a, w in expected.items()}
        self.set = expected
        type(self).installs += 1

    @rule(signing=st_choice, stranger=st.booleans(), judged=st_judged)
    def check_quorum(self, signing, stranger, judged):
        self._check(signing, stranger, judged)

    @rule(absent=st.sampled_from([None, *range(ACTORS)]), stranger=st.booleans(), judged=st_judged)
    def check_quorum_all_but_one(self, absent, stranger, judged):
        """Everyone signs but `absent`: the likeliest way to a quorum, so passing checks are exercised."""
        self._check([i != absent for i in range(ACTORS)], stranger, judged)

    def _check(self, signing, stranger, judged):
        self.digest_counter += 1
        digest = keccak(self.digest_counter.to_bytes(32, "big"))
        keys = {a.address: a.private_key for a, pick in zip(self.actors, signing, strict=True) if pick}
        if stranger:
            outsider = Account.create()
            keys[outsider.address] = outsider.key
        ordered = sorted(keys, key=lambda a: int(a, 16))
        signatures = [bytes(Account.unsafe_sign_hash(digest, keys[a]).signature) for a in ordered]
        excluded = brownie.ZERO_ADDRESS if judged is None else self.actors[judged].address
        total = sum(self.set.values()) - self.set.get(excluded, 0)
        signed = sum(self.counted.get(a, 0) for a in ordered if a != excluded)
        if total == 0:
            with brownie.reverts("ValidatorQuorumNoValidators: "):
                self.quorum.checkQuorumExcluding(digest, signatures, excluded)
        elif signed * 3 >= total * 2:
            assert self.quorum.checkQuorumExcluding(digest, signatures, excluded) == signed
            type(self).checks_passed += 1
        else:
            with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
                self.quorum.checkQuorumExcluding(digest, signatures, excluded)

    @invariant()
    def the_set_is_the_last_elected_one(self):
        members, weights = current_set(self.quorum)
        assert members == sorted(members, key=lambda a: int(a, 16))
        assert dict(zip(members, weights, strict=True)) == self.set
        assert self.quorum.totalWeight() == sum(self.set.values())
        assert self.quorum.validatorSetEpoch() == self.epoch

    @invariant()
    def opting_in_matches_the_model(self):
        for account in self.actors:
            assert self.quorum.hasJoined(account) == self.joined[account.address]


def test_quorum_state_machine(
    pod, stkpod, bonding, validator_quorum, validators, treasury, accounts, deployer
):
    extra = []
    for i in range(ACTORS - len(validators)):
        wallet = accounts.add("0x" + bytes([0xB0 + i] * 32).hex())
        deployer.transfer(wallet, 10**18)
        extra.append(wallet)
    actors = [*validators, *extra]
    for actor in actors:
        pod.transfer(actor, 10 * MIN_VALIDATOR_BOND * 5, {"from": treasury})
        pod.approve(stkpod, 2**256 - 1, {"from": actor})
        stkpod.approve(bonding, 2**256 - 1, {"from": actor})
    pod.approve(stkpod, 2**256 - 1, {"from": treasury})
    installer = accounts[7]
    validator_quorum.bindInstaller(installer, {"from": deployer})
    machine = QuorumMachine.bind(
        pod=pod,
        stkpod=stkpod,
        bonding=bonding,
        quorum=validator_quorum,
        installer=installer,
        treasury=treasury,
        actors=actors,
    )
    run_chain_state_machine(machine, max_examples=examples(16), steps=15)
    assert machine.installs > 0 and machine.checks_passed > 0
