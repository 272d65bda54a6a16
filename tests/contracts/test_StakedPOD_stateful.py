"""StakedPOD as a state machine: deposits, rewards, time, transfers, cooldowns and redemptions in any order.

Invariants: the vault holds at least the assets it accounts for; the share price never falls (this vault has
no loss path; slashes act in Bonding); nobody redeems outside an unstake window or beyond its cover. A redeem
pays what `previewRedeem` promised just before, plus at most what vested in between; a donation moves
`totalAssets` by exactly what vested meanwhile, not by the donation; a notified reward does not make
`totalAssets` jump (it grows by at most what was already vesting).
"""

import brownie
from brownie import chain
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from tests.contracts.conftest import POD_UNIT, SHARE_UNIT, ChainStateMachine, run_chain_state_machine
from tests.examples import examples

DAY = 86400
COOLDOWN = 90 * DAY
WINDOW = 7 * DAY
ACTORS = 3


st_actor = st.integers(min_value=0, max_value=ACTORS - 1)
st_amount = st.integers(min_value=1, max_value=1_000_000 * POD_UNIT)
st_bps = st.integers(min_value=1, max_value=10_000)
st_days = st.sampled_from([1, 3, 7, 30, 90])  # 90: straight into an unstake window


class VaultMachine(ChainStateMachine):
    """Bound to pod, stkpod, treasury and actors by the test."""

    redemptions = 0  # successful redeems over the whole run: proves the cooldown path is exercised

    def __init__(self):
        super().__init__()
        self.price = self.stkpod.convertToAssets(SHARE_UNIT)
        # model of each cooldown: start timestamp and shares still covered
        self.cover = {actor: (0, 0) for actor in self.actors}

    @initialize(amounts=st.lists(st_amount, min_size=ACTORS, max_size=ACTORS))
    def everyone_deposits(self, amounts):
        for account, amount in zip(self.actors, amounts, strict=True):
            self.stkpod.deposit(amount, account, {"from": account})

    @rule(actor=st_actor, amount=st_amount)
    def deposit(self, actor, amount):
        self.stkpod.deposit(amount, self.actors[actor], {"from": self.actors[actor]})

    @rule(amount=st_amount)
    def notify_rewards(self, amount):
        before, unvested, end = self.stkpod.totalAssets(), self.stkpod.unvestedRewards(), self._vesting_end()
        then = chain[-1].timestamp
        if self.stkpod.totalSupply() == 0:  # everyone redeemed: nobody to vest to
            with brownie.reverts("StakedPODNoStakers: "):
                self.stkpod.notifyRewards(amount, {"from": self.treasury})
            return
        tx = self.stkpod.notifyRewards(amount, {"from": self.treasury})
        grown = self.stkpod.totalAssets() - before
        # What the old schedule vests between the two blocks (to within rounding), none of the new reward.
        vesting = 0 if end <= then else unvested * (min(tx.timestamp, end) - then) // (end - then) + 2
        assert 0 <= grown <= vesting

    @rule(amount=st_amount)
    def donate(self, amount):
        before, unvested = self.stkpod.totalAssets(), self.stkpod.unvestedRewards()
        self.pod.transfer(self.stkpod, amount, {"from": self.treasury})
        assert self.stkpod.totalAssets() - before == unvested - self.stkpod.unvestedRewards()

    def _vesting_end(self):
        return self.stkpod.rewardsVestingEnd()

    @rule(days=st_days)
    def sleep(self, days):
        chain.sleep(days * DAY)
        chain.mine()

    @rule(actor=st_actor)
    def cooldown(self, actor):
        account = self.actors[actor]
        balance = self.stkpod.balanceOf(account)
        if balance == 0:
            with brownie.reverts(revert_pattern=r"StakedPODZeroBalance: .*"):
                self.stkpod.cooldown({"from": account})
            return
        tx = self.stkpod.cooldown({"from": account})
        self.cover[account] = (tx.timestamp, balance)

    @rule(actor=st_actor, bps=st_bps, wait=st.sampled_from([89 * DAY, COOLDOWN, 93 * DAY, 98 * DAY]))
    def cooldown_wait_and_redeem(self, actor, bps, wait):
        """The exit path end to end, landing before, at the start of, inside or after the unstake window."""
        self.cooldown(actor)
        chain.sleep(wait)
        chain.mine()
        self.redeem(actor, bps)

    @rule(actor=st_actor, other=st_actor, bps=st_bps)
    def transfer(self, actor, other, bps):
        sender, receiver = self.actors[actor], self.actors[other]
        shares = self.stkpod.balanceOf(sender) * bps // 10_000
        self.stkpod.transfer(receiver, shares, {"from": sender})
        if sender != receiver:
            start, covered = self.cover[sender]
            self.cover[sender] = (start, min(covered, self.stkpod.balanceOf(sender)))

    @rule(actor=st_actor, bps=st_bps)
    def redeem(self, actor, bps):
        account = self.actors[actor]
        start, covered = self.cover[account]
        shares = max(1, self.stkpod.balanceOf(account) * bps // 10_000)
        promised, unvested = self.stkpod.previewRedeem(shares), self.stkpod.unvestedRewards()
        # Judged at the timestamp the call executed at, success or revert (Anvil mines reverted transactions
        # too), so no guess about the next block's time can make this flaky.
        try:
            tx = self.stkpod.redeem(shares, account, account, {"from": account})
        except brownie.exceptions.VirtualMachineError:
            assert not self._allowed(start, covered, shares, chain[-1].timestamp)
            return
        assert self._allowed(start, covered, shares, tx.timestamp)
        vested_meanwhile = unvested - self.stkpod.unvestedRewards()
        assert promised <= tx.return_value <= promised + vested_meanwhile + 1
        type(self).redemptions += 1
        self.cover[account] = (start, min(covered - shares, self.stkpod.balanceOf(account)))

    @staticmethod
    def _allowed(start, covered, shares, timestamp):
        return start != 0 and start + COOLDOWN <= timestamp <= start + COOLDOWN + WINDOW and shares <= covered

    @invariant()
    def vault_holds_what_it_accounts(self):
        accounted = self.stkpod.totalAssets() + self.stkpod.unvestedRewards()
        assert self.pod.balanceOf(self.stkpod) >= accounted

    @invariant()
    def share_price_never_falls(self):
        price = self.stkpod.convertToAssets(SHARE_UNIT)
        assert price >= self.price
        self.price = price

    @invariant()
    def cover_matches_the_model(self):
        # The model clamps each cover to the balance left whenever shares leave, so equality also proves
        # that no cooldown covers more shares than its account holds.
        for account in self.actors:
            assert tuple(self.stkpod.cooldownOf(account)) == self.cover[account]


def test_vault_state_machine(pod, stkpod, treasury, accounts):
    actors = list(accounts[3 : 3 + ACTORS])
    for account in actors:
        pod.transfer(account, 50_000_000 * POD_UNIT, {"from": treasury})
        pod.approve(stkpod, 2**256 - 1, {"from": account})
    pod.approve(stkpod, 2**256 - 1, {"from": treasury})
    machine = VaultMachine.bind(pod=pod, stkpod=stkpod, treasury=treasury, actors=actors)
    run_chain_state_machine(machine, max_examples=examples(20), steps=20)
    assert machine.redemptions > 0
