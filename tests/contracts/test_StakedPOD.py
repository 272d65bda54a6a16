"""StakedPOD: ERC-4626 accounting, inflation attacks failing, vesting rewards, the stkAAVE-style cooldown,
share votes."""

import brownie
from brownie import chain

from tests.contracts.conftest import POD_UNIT, SHARE_UNIT, stake_pod

DAY = 86400
COOLDOWN = 90 * DAY
WINDOW = 7 * DAY
VESTING = 7 * DAY


def sleep_to(timestamp):
    """Mines a block at or just after `timestamp` (chain[-1].timestamp is the time base)."""
    chain.sleep(max(0, timestamp - chain[-1].timestamp))
    chain.mine()


def cooled_down(pod, stkpod, treasury, account, amount):
    """Stakes `amount`, starts the cooldown and sleeps into the unstake window; returns (shares, start)."""
    shares = stake_pod(pod, stkpod, treasury, account, amount)
    start = stkpod.cooldown({"from": account}).timestamp
    sleep_to(start + COOLDOWN)
    return shares, start


def cooldown_of(stkpod, account):
    start, shares = stkpod.cooldownOf(account)
    return int(start), int(shares)


def test_metadata_and_constants(stkpod, pod):
    assert (stkpod.name(), stkpod.symbol(), stkpod.decimals()) == ("Staked POD", "stkPOD", 24)
    assert stkpod.asset() == pod
    assert stkpod.COOLDOWN_PERIOD() == COOLDOWN
    assert stkpod.UNSTAKE_WINDOW() == WINDOW
    assert stkpod.REWARDS_VESTING_PERIOD() == VESTING


def test_deposit_mints_shares_and_accounts_assets(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    shares = stake_pod(pod, stkpod, treasury, alice, 1_000 * POD_UNIT)
    assert shares == 1_000 * SHARE_UNIT
    assert stkpod.balanceOf(alice) == shares
    assert stkpod.totalAssets() == 1_000 * POD_UNIT
    assert pod.balanceOf(stkpod) == 1_000 * POD_UNIT


def test_mint_pulls_the_previewed_assets(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    pod.transfer(alice, 10 * POD_UNIT, {"from": treasury})
    pod.approve(stkpod, 10 * POD_UNIT, {"from": alice})
    assets = stkpod.mint(5 * SHARE_UNIT, alice, {"from": alice}).return_value
    assert assets == 5 * POD_UNIT
    assert pod.balanceOf(alice) == 5 * POD_UNIT


def test_donation_by_plain_transfer_does_not_move_the_share_price(stkpod, pod, treasury, accounts):
    stake_pod(pod, stkpod, treasury, accounts[3], 100 * POD_UNIT)
    price_before = stkpod.convertToAssets(SHARE_UNIT)
    pod.transfer(stkpod, 1_000_000 * POD_UNIT, {"from": treasury})
    assert stkpod.convertToAssets(SHARE_UNIT) == price_before
    assert stkpod.totalAssets() == 100 * POD_UNIT


def test_first_depositor_inflation_attack_by_donation_fails(stkpod, pod, treasury, accounts):
    attacker, victim = accounts[3], accounts[4]
    stake_pod(pod, stkpod, treasury, attacker, 1)  # one wei of POD
    pod.transfer(stkpod, 10_000 * POD_UNIT, {"from": treasury})  # the classic donation: ignored
    victim_shares = stake_pod(pod, stkpod, treasury, victim, 1_000 * POD_UNIT)
    assert victim_shares == 1_000 * SHARE_UNIT
    assert stkpod.previewRedeem(victim_shares) == 1_000 * POD_UNIT


def test_first_depositor_inflation_attack_by_notified_reward_loses_money(stkpod, pod, treasury, accounts):
    attacker, victim = accounts[3], accounts[4]
    donation = 10_000 * POD_UNIT
    attacker_shares = stake_pod(pod, stkpod, treasury, attacker, 1)
    pod.transfer(attacker, donation, {"from": treasury})
    pod.approve(stkpod, donation, {"from": attacker})
    tx = stkpod.notifyRewards(donation, {"from": attacker})
    sleep_to(tx.timestamp + VESTING)  # fully vested: the price per share is as inflated as it gets

    deposit = 1_000 * POD_UNIT
    victim_shares = stake_pod(pod, stkpod, treasury, victim, deposit)
    assert victim_shares > 0
    # The victim keeps all but a rounding sliver; the attacker's claim is worth far less than it paid,
    # because the 10^6 virtual shares absorb most of the donation.
    assert stkpod.previewRedeem(victim_shares) >= deposit * 9_999 // 10_000
    assert stkpod.previewRedeem(attacker_shares) < (donation + 1) * 6 // 10


def test_notify_rewards_vests_linearly(stkpod, pod, treasury, accounts):
    stake_pod(pod, stkpod, treasury, accounts[3], 1_000 * POD_UNIT)
    pod.approve(stkpod, 700 * POD_UNIT, {"from": treasury})
    tx = stkpod.notifyRewards(700 * POD_UNIT, {"from": treasury})
    start = tx.timestamp
    assert tx.events["RewardsNotified"]["amount"] == 700 * POD_UNIT
    assert tx.events["RewardsNotified"]["vestingEnd"] == start + VESTING
    assert stkpod.rewardsVestingEnd() == start + VESTING
    assert stkpod.unvestedRewards() == 700 * POD_UNIT
    assert stkpod.totalAssets() == 1_000 * POD_UNIT

    sleep_to(start + VESTING // 2)
    elapsed = chain[-1].timestamp - start
    vested = 700 * POD_UNIT * elapsed // VESTING
    assert abs(stkpod.totalAssets() - (1_000 * POD_UNIT + vested)) <= 1

    sleep_to(start + VESTING)
    assert stkpod.unvestedRewards() == 0
    assert stkpod.totalAssets() == 1_700 * POD_UNIT
    assert pod.balanceOf(stkpod) == 1_700 * POD_UNIT


def test_top_up_moves_the_vesting_end_to_the_weighted_average(stkpod, pod, treasury, accounts):
    stake_pod(pod, stkpod, treasury, accounts[3], 1_000 * POD_UNIT)
    pod.approve(stkpod, 2**256 - 1, {"from": treasury})
    first = stkpod.notifyRewards(1_000 * POD_UNIT, {"from": treasury})
    sleep_to(first.timestamp + VESTING // 2)
    assets_before = stkpod.totalAssets()
    unvested = stkpod.unvestedRewards()
    end_before = stkpod.rewardsVestingEnd()

    dust = stkpod.notifyRewards(1, {"from": treasury})  # a dust top-up cannot stall earlier rewards
    expected_end = (unvested * end_before + 1 * (dust.timestamp + VESTING)) // (unvested + 1)
    assert stkpod.rewardsVestingEnd() == expected_end == end_before
    # totalAssets is continuous across a notification: nobody gains at the instant it lands.
    assert (
        stkpod.totalAssets() - assets_before
        <= 1_000 * POD_UNIT * (dust.timestamp - chain[-2].timestamp) // VESTING + 1
    )


def test_notify_zero_or_without_allowance_reverts(stkpod, pod, treasury, accounts):
    stake_pod(pod, stkpod, treasury, accounts[3], POD_UNIT)
    with brownie.reverts("StakedPODZeroRewards: "):
        stkpod.notifyRewards(0, {"from": treasury})
    with brownie.reverts(revert_pattern=r"ERC20InsufficientAllowance: .*"):
        stkpod.notifyRewards(POD_UNIT, {"from": treasury})


def test_rewards_are_refused_while_nobody_stakes(stkpod, pod, treasury, accounts):
    """Low finding: a reward notified with no shares in existence went to the next depositor alone."""
    pod.approve(stkpod, 1_000 * POD_UNIT, {"from": treasury})
    with brownie.reverts("StakedPODNoStakers: "):
        stkpod.notifyRewards(1_000 * POD_UNIT, {"from": treasury})
    shares = stake_pod(pod, stkpod, treasury, accounts[3], 1_000 * POD_UNIT)
    assert stkpod.previewRedeem(shares) == 1_000 * POD_UNIT  # nothing was waiting for the first depositor


def test_shares_are_delegable_timestamped_votes(stkpod, pod, treasury, accounts):
    alice, bob = accounts[3], accounts[4]
    shares = stake_pod(pod, stkpod, treasury, alice, 1_000 * POD_UNIT)
    assert stkpod.CLOCK_MODE() == "mode=timestamp" and stkpod.clock() == chain[-1].timestamp
    assert stkpod.getVotes(alice) == 0  # votes count once delegated, as POD's
    delegated = stkpod.delegate(alice, {"from": alice})
    assert stkpod.getVotes(alice) == shares
    sleep_to(delegated.timestamp + 10)  # checkpoints are per second: keep the transfer in a later one
    stkpod.transfer(bob, shares // 4, {"from": alice})
    assert stkpod.getVotes(alice) == shares - shares // 4
    sleep_to(chain[-1].timestamp + 10)
    assert stkpod.getPastVotes(alice, delegated.timestamp) == shares


def test_sandwich_around_a_buyback_earns_only_what_vests_meanwhile(stkpod, pod, treasury, accounts):
    honest, attacker = accounts[3], accounts[4]
    stake_pod(pod, stkpod, treasury, honest, 1_000_000 * POD_UNIT)
    # The attacker prepared the best case: a large position already in its unstake window.
    attacker_shares, _ = cooled_down(pod, stkpod, treasury, attacker, 1_000_000 * POD_UNIT)
    value_before = stkpod.previewRedeem(attacker_shares)

    reward = 100_000 * POD_UNIT
    pod.approve(stkpod, reward, {"from": treasury})
    notified = stkpod.notifyRewards(reward, {"from": treasury})
    redeemed = stkpod.redeem(attacker_shares, attacker, attacker, {"from": attacker})
    elapsed = redeemed.timestamp - notified.timestamp + 1

    gain = redeemed.return_value - value_before
    instant_jump_gain = reward // 2  # what a jump-on-deposit vault (plain xSUSHI) would have paid
    assert gain <= reward * elapsed // VESTING + 1
    assert gain < instant_jump_gain // 1_000


def test_cooldown_snapshots_balance_and_emits(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    shares = stake_pod(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    tx = stkpod.cooldown({"from": alice})
    assert tx.events["CooldownStarted"]["shares"] == shares
    assert cooldown_of(stkpod, alice) == (tx.timestamp, shares)


def test_cooldown_without_shares_reverts(stkpod, accounts):
    with brownie.reverts(revert_pattern=r"StakedPODZeroBalance: .*"):
        stkpod.cooldown({"from": accounts[3]})


def test_redeem_without_cooldown_reverts_and_max_is_zero(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    shares = stake_pod(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    assert stkpod.maxRedeem(alice) == 0 and stkpod.maxWithdraw(alice) == 0
    with brownie.reverts(revert_pattern=r"StakedPODNoCooldown: .*"):
        stkpod.redeem(shares, alice, alice, {"from": alice})
    with brownie.reverts(revert_pattern=r"StakedPODNoCooldown: .*"):
        stkpod.withdraw(POD_UNIT, alice, alice, {"from": alice})


def test_redeem_before_cooldown_ends_reverts(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    shares = stake_pod(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    start = stkpod.cooldown({"from": alice}).timestamp
    sleep_to(start + COOLDOWN - 3600)
    assert stkpod.maxRedeem(alice) == 0 and stkpod.maxWithdraw(alice) == 0
    with brownie.reverts(revert_pattern=r"StakedPODCooldownNotFinished: .*"):
        stkpod.redeem(shares, alice, alice, {"from": alice})
    with brownie.reverts(revert_pattern=r"StakedPODCooldownNotFinished: .*"):
        stkpod.withdraw(POD_UNIT, alice, alice, {"from": alice})


def test_redeem_in_the_unstake_window_pays_out(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    shares, _ = cooled_down(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    assert stkpod.maxRedeem(alice) == shares
    assert stkpod.maxWithdraw(alice) == 10 * POD_UNIT
    stkpod.redeem(shares // 2, alice, alice, {"from": alice})
    assert pod.balanceOf(alice) == 5 * POD_UNIT
    stkpod.withdraw(5 * POD_UNIT, alice, alice, {"from": alice})
    assert pod.balanceOf(alice) == 10 * POD_UNIT
    assert stkpod.balanceOf(alice) == 0 and stkpod.totalAssets() == 0


def test_redeem_after_the_window_reverts_until_a_new_cooldown(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    shares, start = cooled_down(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    sleep_to(start + COOLDOWN + WINDOW + 1)
    assert stkpod.maxRedeem(alice) == 0
    with brownie.reverts(revert_pattern=r"StakedPODUnstakeWindowClosed: .*"):
        stkpod.redeem(shares, alice, alice, {"from": alice})


def test_received_shares_are_not_covered_by_an_earlier_cooldown(stkpod, pod, treasury, accounts):
    alice, bob = accounts[3], accounts[4]
    covered, start = cooled_down(pod, stkpod, treasury, bob, 10 * POD_UNIT)
    received = stake_pod(pod, stkpod, treasury, alice, 50 * POD_UNIT)
    stkpod.transfer(bob, received, {"from": alice})
    # Receiving neither extends the cover nor changes the clock: the received shares wait their own cooldown.
    assert cooldown_of(stkpod, bob) == (start, covered)
    assert stkpod.maxRedeem(bob) == covered
    with brownie.reverts(revert_pattern=r"StakedPODExceedsCooldown: .*"):
        stkpod.redeem(covered + 1, bob, bob, {"from": bob})


def test_sending_shares_away_shrinks_the_cover_and_redeeming_uses_it_up(stkpod, pod, treasury, accounts):
    alice, bob = accounts[3], accounts[4]
    covered, start = cooled_down(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    stkpod.transfer(bob, covered // 4, {"from": alice})
    assert cooldown_of(stkpod, alice) == (start, covered - covered // 4)
    # New shares arrive, then part of the cover is redeemed: the new shares never become redeemable.
    stake_pod(pod, stkpod, treasury, alice, 100 * POD_UNIT)
    stkpod.redeem(covered // 4, alice, alice, {"from": alice})
    assert stkpod.cooldownOf(alice)[1] == covered // 2
    assert stkpod.maxRedeem(alice) == covered // 2


def test_redeem_on_behalf_follows_the_owners_cooldown(stkpod, pod, treasury, accounts):
    alice, spender = accounts[3], accounts[4]
    shares = stake_pod(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    stkpod.approve(spender, shares, {"from": alice})
    with brownie.reverts(revert_pattern=r"StakedPODNoCooldown: .*"):
        stkpod.redeem(shares, spender, alice, {"from": spender})
    start = stkpod.cooldown({"from": alice}).timestamp
    sleep_to(start + COOLDOWN)
    stkpod.redeem(shares, spender, alice, {"from": spender})
    assert pod.balanceOf(spender) == 10 * POD_UNIT


def test_cooldown_exempt_role_redeems_at_any_time_and_only_admin_grants_it(
    stkpod, pod, treasury, accounts, deployer
):
    holder = accounts[5]
    shares = stake_pod(pod, stkpod, treasury, holder, 10 * POD_UNIT)
    role = stkpod.COOLDOWN_EXEMPT_ROLE()
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        stkpod.grantRole(role, holder, {"from": holder})
    stkpod.grantRole(role, holder, {"from": deployer})
    assert stkpod.maxRedeem(holder) == shares
    stkpod.redeem(shares, holder, holder, {"from": holder})
    assert pod.balanceOf(holder) == 10 * POD_UNIT


def test_vested_rewards_raise_what_shares_redeem_for(stkpod, pod, treasury, accounts):
    alice = accounts[3]
    shares = stake_pod(pod, stkpod, treasury, alice, 1_000 * POD_UNIT)
    pod.approve(stkpod, 500 * POD_UNIT, {"from": treasury})
    stkpod.notifyRewards(500 * POD_UNIT, {"from": treasury})
    # The cooldown (90 days) outlasts the vesting (7 days): the window opens on fully vested rewards.
    start = stkpod.cooldown({"from": alice}).timestamp
    sleep_to(start + COOLDOWN)
    received = stkpod.redeem(shares, alice, alice, {"from": alice}).return_value
    # All of it but rounding (the virtual shares' sliver stays in the vault).
    assert 1_500 * POD_UNIT - POD_UNIT // 10**6 <= received <= 1_500 * POD_UNIT


def test_max_withdraw_is_withdrawable_at_an_uneven_share_price(stkpod, pod, treasury, accounts):
    """ERC-4626: maxWithdraw must not revert when withdrawn, whatever the rounding of the share price."""
    alice, bob = accounts[3], accounts[4]
    stake_pod(pod, stkpod, treasury, bob, 333 * POD_UNIT + 7)
    pod.approve(stkpod, 2**256 - 1, {"from": treasury})
    stkpod.notifyRewards(101 * POD_UNIT + 13, {"from": treasury})
    sleep_to(chain[-1].timestamp + 3 * DAY)
    shares, _ = cooled_down(pod, stkpod, treasury, alice, 77 * POD_UNIT + 3)
    most = stkpod.maxWithdraw(alice)
    assert most > 0
    burned = stkpod.withdraw(most, alice, alice, {"from": alice}).return_value
    assert burned <= shares
    assert stkpod.maxRedeem(alice) == shares - burned
    if shares - burned:
        stkpod.redeem(shares - burned, alice, alice, {"from": alice})
    assert stkpod.maxRedeem(alice) == 0 and stkpod.maxWithdraw(alice) == 0
