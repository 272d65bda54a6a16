"""Bonding and Slashing as a state machine: bonds, unbond requests, withdrawals, quorum slashes, time.

Invariants: Bonding holds exactly the shares it owes (active plus thawing of every account); a slash never
exceeds what is slashable nor `maxSlashBps` of it; reporter reward plus removed equals slashed, and the
removed part burns exactly the POD it redeemed; the share price never falls, not even by a slash; no request
pays before it thaws. Thaw pools: the open requests of an account add up to at most its thawing shares; no
request gains from a slash, a bond, a reward or time (its own account's new requests and withdrawals may hand
it rounding dust, which is why those re-read it); a slash of thawing stake cuts every open request by the
same fraction, to within each one's one-share rounding. (The quorum has its own machine.)
"""

import brownie
from brownie import chain
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from tests.contracts.conftest import (
    POD_UNIT,
    SHARE_UNIT,
    STRIKE_DECISION_FIELDS,
    ChainStateMachine,
    run_chain_state_machine,
    sign_typed,
)
from tests.examples import examples

DAY = 86400
OPERATORS = 3

st_operator = st.integers(min_value=0, max_value=OPERATORS - 1)
st_amount = st.integers(min_value=1, max_value=500_000 * POD_UNIT)
st_bps = st.integers(min_value=1, max_value=10_000)
st_days = st.sampled_from([1, 7, 30, 90])


class BondingMachine(ChainStateMachine):
    """Bound by the test to pod, stkpod, bonding, slashing, treasury, operators, validators, reporter."""

    slashes = withdrawals = 0  # successes over the whole run: proves both paths are exercised

    def __init__(self):
        super().__init__()
        self.price = self.stkpod.convertToAssets(SHARE_UNIT)
        self.active = {operator: 0 for operator in self.operators}
        self.requests = {operator: [] for operator in self.operators}  # (request id, unlock time)
        self.evidence = 0
        self.request_shares = {}  # open request id -> its shares when last seen
        # Validators' bonds move only by reporter cuts, which the slash rule adds: read once, not per step.
        self.validators_bonded = sum(self.bonding.slashableOf(v) for v in self.validators)

    def _stake_and_bond(self, operator, amount):
        shares = self.stkpod.deposit(amount, operator, {"from": operator}).return_value
        self.bonding.bond(shares, {"from": operator})
        self.active[operator] += shares

    @initialize(amounts=st.lists(st_amount, min_size=OPERATORS, max_size=OPERATORS))
    def everyone_bonds(self, amounts):
        for operator, amount in zip(self.operators, amounts, strict=True):
            self._stake_and_bond(operator, amount)

    @rule(operator=st_operator, amount=st_amount)
    def bond(self, operator, amount):
        self._stake_and_bond(self.operators[operator], amount)

    @rule(operator=st_operator, bps=st_bps)
    def request_unbond(self, operator, bps):
        account = self.operators[operator]
        shares = self.active[account] * bps // 10_000
        if shares == 0:
            with brownie.reverts("BondingZeroShares: "):
                self.bonding.requestUnbond(shares, {"from": account})
            return
        tx = self.bonding.requestUnbond(shares, {"from": account})
        self.active[account] -= shares
        self.requests[account].append((tx.return_value, tx.events["UnbondRequested"]["unlockTime"]))
        self._reread(account)

    @rule(operator=st_operator)
    def withdraw_oldest(self, operator):
        account = self.operators[operator]
        if self.requests[account]:
            self._withdraw(account, 0)

    @rule(operator=st_operator, bps=st_bps, wait=st.sampled_from([89 * DAY, 90 * DAY, 120 * DAY]))
    def unbond_wait_and_withdraw(self, operator, bps, wait):
        """The exit path end to end, withdrawing a day early, on time or late (slashes may come between)."""
        account = self.operators[operator]
        pending = len(self.requests[account])
        self.request_unbond(operator, bps)
        chain.sleep(wait)
        chain.mine()
        if len(self.requests[account]) > pending:
            self._withdraw(account, pending)

    def _withdraw(self, account, index):
        request_id, unlock = self.requests[account][index]
        owed = self.bonding.unbondRequest(request_id)[2]
        before = self.stkpod.balanceOf(account)
        # Judged at the timestamp the call executed at, success or revert (Anvil mines reverted transactions).
        try:
            tx = self.bonding.withdrawUnbonded(request_id, {"from": account})
        except brownie.exceptions.VirtualMachineError:
            assert chain[-1].timestamp < unlock
            return
        assert tx.timestamp >= unlock
        assert self.stkpod.balanceOf(account) - before == owed
        self.requests[account].pop(index)
        del self.request_shares[request_id]
        self._reread(account)
        type(self).withdrawals += 1

    @rule(
        operator=st_operator,
        bps=st.integers(min_value=1, max_value=5_000),
        reported_by=st.sampled_from(["nobody", "user", "validator"]),
    )
    def slash(self, operator, bps, reported_by):
        offender = self.operators[operator]
        reporter = {"nobody": brownie.ZERO_ADDRESS, "user": self.reporter, "validator": self.validators[0]}[
            reported_by
        ]
        self.evidence += 1
        message = {
            "offender": offender.address,
            "evidenceHash": self.evidence.to_bytes(32, "big"),
            "slashBps": bps,
            "reporter": str(reporter),
            "deadline": chain[-1].timestamp + 3600,
        }
        signatures = [
            sign_typed(
                v.private_key, self.slashing.address, "StrikeDecision", STRIKE_DECISION_FIELDS, message
            )
            for v in self.validators[1:]
        ]
        decision = tuple(message[field["name"]] for field in STRIKE_DECISION_FIELDS)
        slashable = self.bonding.slashableOf(offender)
        expected = slashable * bps // 10_000
        if expected == 0:
            with brownie.reverts(revert_pattern=r"SlashingNothingToSlash: .*"):
                self.slashing.slash(decision, signatures, {"from": self.reporter})
            return
        supply = self.pod.totalSupply()
        user_before = self.stkpod.balanceOf(self.reporter)
        validator_before = self.bonding.activeBondOf(self.validators[0])
        pool_before = self.bonding.thawingOf(offender)
        open_ids = [request_id for request_id, _ in self.requests[offender]]
        tx = self.slashing.slash(decision, signatures, {"from": self.reporter})
        pool_after = self.bonding.thawingOf(offender)
        for request_id in open_ids:
            # a = floor(p S'/P) and b = floor(p S/P) give |a S - b S'| <= S: the same fraction, rounded.
            was, now = self.request_shares[request_id], self.bonding.unbondRequest(request_id)[2]
            assert abs(now * pool_before - was * pool_after) <= pool_before

        event = tx.events["Slashed"]
        assert tx.return_value == event["shares"] == expected
        assert expected <= slashable * self.slashing.maxSlashBps() // 10_000 <= slashable
        assert event["reporterShares"] + event["removedShares"] == expected
        # A user is paid in stkPOD, a validator in bonded stake (which this model then owes it).
        user_cut = self.stkpod.balanceOf(self.reporter) - user_before
        validator_cut = self.bonding.activeBondOf(self.validators[0]) - validator_before
        assert user_cut + validator_cut == event["reporterShares"]
        assert (user_cut == 0 or reported_by == "user") and (validator_cut == 0 or reported_by == "validator")
        self.validators_bonded += validator_cut
        burned = tx.events["Withdraw"]["assets"] if event["removedShares"] else 0
        assert supply - self.pod.totalSupply() == burned
        self.active[offender] -= min(expected, self.active[offender])
        type(self).slashes += 1

    @rule(days=st_days)
    def sleep(self, days):
        chain.sleep(days * DAY)
        chain.mine()

    @rule(amount=st_amount)
    def notify_rewards(self, amount):
        self.stkpod.notifyRewards(amount, {"from": self.treasury})

    @invariant()
    def bonding_holds_exactly_what_it_owes(self):
        owed = self.validators_bonded + sum(self.bonding.slashableOf(a) for a in self.operators)
        assert self.stkpod.balanceOf(self.bonding) == owed

    @invariant()
    def active_bonds_match_the_model(self):
        for operator in self.operators:
            assert self.bonding.activeBondOf(operator) == self.active[operator]

    def _reread(self, account):
        for request_id, _ in self.requests[account]:
            self.request_shares[request_id] = self.bonding.unbondRequest(request_id)[2]

    @invariant()
    def thaw_pools_cover_their_requests_and_none_gains(self):
        for account, requests in self.requests.items():
            owed = 0
            for request_id, _ in requests:
                shares = self.bonding.unbondRequest(request_id)[2]
                assert shares <= self.request_shares[request_id]
                self.request_shares[request_id] = shares
                owed += shares
            assert owed <= self.bonding.thawingOf(account)

    @invariant()
    def share_price_never_falls(self):
        price = self.stkpod.convertToAssets(SHARE_UNIT)
        assert price >= self.price
        self.price = price


def test_bonding_state_machine(pod, stkpod, bonding, slashing, treasury, validators, accounts):
    operators = list(accounts[3 : 3 + OPERATORS])
    for operator in operators:
        pod.transfer(operator, 20_000_000 * POD_UNIT, {"from": treasury})
        pod.approve(stkpod, 2**256 - 1, {"from": operator})
        stkpod.approve(bonding, 2**256 - 1, {"from": operator})
    pod.approve(stkpod, 2**256 - 1, {"from": treasury})
    machine = BondingMachine.bind(
        pod=pod,
        stkpod=stkpod,
        bonding=bonding,
        slashing=slashing,
        treasury=treasury,
        operators=operators,
        validators=validators,
        reporter=accounts[8],
    )
    run_chain_state_machine(machine, max_examples=examples(20), steps=20)
    assert machine.slashes > 0 and machine.withdrawals > 0
