"""Buyback: TWAP-guarded swaps of revenue into POD on a real Uniswap V2 pair, including a failed sandwich."""

import json
from math import isqrt

import brownie
import pytest
from brownie import chain
from eth_utils import keccak

from tests.contracts.conftest import POD_UNIT, UNISWAP_BUILD, USD_UNIT

WINDOW = 1800
SLIPPAGE_BPS = 100
CAP = 20_000 * USD_UNIT
REVENUE = 50_000 * USD_UNIT
STAKERS, BURN = 0, 1
Q112 = 2**112


STAKED = 1_000 * POD_UNIT


@pytest.fixture(scope="module")
def vault(StakedPOD, pod, treasury, deployer):
    """A vault with one staker, so bought POD has someone to vest to."""
    vault = StakedPOD.deploy(pod, deployer, {"from": deployer})
    pod.approve(vault, STAKED, {"from": treasury})
    vault.deposit(STAKED, treasury, {"from": treasury})
    return vault


@pytest.fixture(scope="module")
def keeper(accounts):
    return accounts[3]


@pytest.fixture(scope="module")
def buyback(Buyback, uniswap, stablecoin, pod, pod_pair, vault, deployer, keeper):
    buyback = Buyback.deploy(
        uniswap.router, stablecoin, pod, vault, deployer, WINDOW, SLIPPAGE_BPS, CAP, {"from": deployer}
    )
    buyback.grantRole(buyback.KEEPER_ROLE(), keeper, {"from": deployer})
    stablecoin.mint(buyback, REVENUE, {"from": deployer})
    return buyback


def _deadline(seconds=600):
    return chain[-1].timestamp + seconds


def _wait(seconds):
    chain.sleep(seconds)
    chain.mine()


def _spot_quote(pod_pair, stablecoin, amount_in):
    """What the pair pays now for `amount_in` lUSD (Uniswap V2 getAmountOut, 0.3% fee)."""
    reserve0, reserve1, _ = pod_pair.getReserves()
    usd_reserve, pod_reserve = (
        (reserve0, reserve1) if pod_pair.token0() == stablecoin else (reserve1, reserve0)
    )
    return amount_in * 997 * pod_reserve // (usd_reserve * 1000 + amount_in * 997)


def test_router_init_code_hash_is_the_factorys_pair(uniswap, pod_pair, stablecoin, pod):
    """Router02 locates pairs by CREATE2 with a hard-coded init-code hash; the npm artifacts agree with it."""
    pair_bytecode = json.loads((UNISWAP_BUILD / "v2-core/build/UniswapV2Pair.json").read_text())["bytecode"]
    init_code_hash = keccak(hexstr=pair_bytecode)
    router_bytecode = json.loads((UNISWAP_BUILD / "v2-periphery/build/UniswapV2Router02.json").read_text())
    assert init_code_hash.hex() in router_bytecode["bytecode"]
    token0, token1 = sorted([stablecoin.address, pod.address], key=lambda a: int(a, 16))
    salt = keccak(bytes.fromhex(token0[2:]) + bytes.fromhex(token1[2:]))
    create2 = keccak(b"\xff" + bytes.fromhex(uniswap.factory.address[2:]) + salt + init_code_hash)[12:]
    assert pod_pair.address.lower() == "0x" + create2.hex()


def test_deployment_finds_the_pair_and_records_an_observation(buyback, pod_pair, uniswap, stablecoin, vault):
    assert buyback.pair() == pod_pair == uniswap.factory.getPair(stablecoin, buyback.pod())
    assert (buyback.twapWindow(), buyback.maxSlippageBps(), buyback.maxSwapAmount()) == (
        WINDOW,
        SLIPPAGE_BPS,
        CAP,
    )
    assert buyback.destination() == STAKERS
    assert buyback.stakedPod() == vault
    older, newer = buyback.observations()
    assert (older[0], older[1]) == (0, 0)
    assert newer[1] == buyback.tx.timestamp


def test_constructor_refuses_missing_pair_and_zero_addresses(
    Buyback, LocalStablecoin, uniswap, stablecoin, pod, vault, deployer, pod_pair
):
    other = LocalStablecoin.deploy({"from": deployer})
    with brownie.reverts("BuybackPairMissing: "):
        Buyback.deploy(
            uniswap.router, other, pod, vault, deployer, WINDOW, SLIPPAGE_BPS, CAP, {"from": deployer}
        )
    with brownie.reverts("BuybackZeroAddress: "):
        Buyback.deploy(
            uniswap.router, stablecoin, pod, brownie.ZERO_ADDRESS, deployer, WINDOW, SLIPPAGE_BPS, CAP,
            {"from": deployer},
        )  # fmt: skip
    with brownie.reverts(revert_pattern=r"BuybackSettingOutOfBounds: .*"):
        Buyback.deploy(
            uniswap.router, stablecoin, pod, vault, deployer, 60, SLIPPAGE_BPS, CAP, {"from": deployer}
        )


def test_constructor_refuses_an_empty_pair(Buyback, LocalStablecoin, uniswap, pod, vault, deployer):
    other = LocalStablecoin.deploy({"from": deployer})
    uniswap.factory.createPair(other, pod, {"from": deployer})
    with brownie.reverts("BuybackNoLiquidity: "):
        Buyback.deploy(
            uniswap.router, other, pod, vault, deployer, WINDOW, SLIPPAGE_BPS, CAP, {"from": deployer}
        )


def test_buyback_swaps_and_vests_pod_into_the_vault(buyback, stablecoin, pod, pod_pair, vault, keeper):
    _wait(WINDOW + 1)
    amount = 10_000 * USD_UNIT
    expected = _spot_quote(pod_pair, stablecoin, amount)
    tx = buyback.buyback(amount, 0, _deadline(), {"from": keeper})
    pod_out = tx.return_value
    assert pod_out == expected
    # 10,000 lUSD at 0.1 lUSD/POD is ~100,000 POD before the 0.3% fee and ~1% price impact.
    assert 98_000 * POD_UNIT < pod_out < 99_800 * POD_UNIT
    assert tx.events["BoughtBack"]["podOut"] == pod_out
    assert tx.events["BoughtBack"]["minPodOut"] <= pod_out
    assert tx.events["RewardsNotified"]["amount"] == pod_out
    assert pod.balanceOf(vault) == STAKED + pod_out
    assert vault.unvestedRewards() == pod_out
    assert stablecoin.balanceOf(buyback) == REVENUE - amount
    assert pod.balanceOf(buyback) == 0


def test_buyback_can_burn_instead(buyback, pod, vault, keeper, deployer):
    buyback.setDestination(BURN, {"from": deployer})
    _wait(WINDOW + 1)
    supply = pod.totalSupply()
    tx = buyback.buyback(5_000 * USD_UNIT, 0, _deadline(), {"from": keeper})
    assert pod.totalSupply() == supply - tx.return_value
    assert pod.balanceOf(vault) == STAKED
    assert tx.events["BoughtBack"]["destination"] == BURN


def test_with_no_stakers_bought_pod_is_burned_not_left_to_the_first_depositor(
    Buyback, StakedPOD, uniswap, stablecoin, pod, pod_pair, keeper, deployer
):
    """Low finding: rewards notified while stkPOD supply is zero went to whoever deposited next."""
    empty = StakedPOD.deploy(pod, deployer, {"from": deployer})
    buyback = Buyback.deploy(
        uniswap.router, stablecoin, pod, empty, deployer, WINDOW, SLIPPAGE_BPS, CAP, {"from": deployer}
    )
    buyback.grantRole(buyback.KEEPER_ROLE(), keeper, {"from": deployer})
    stablecoin.mint(buyback, 1_000 * USD_UNIT, {"from": deployer})
    _wait(WINDOW + 1)
    supply = pod.totalSupply()
    tx = buyback.buyback(1_000 * USD_UNIT, 0, _deadline(), {"from": keeper})
    assert tx.events["BoughtBack"]["destination"] == BURN
    assert pod.totalSupply() == supply - tx.return_value
    assert pod.balanceOf(empty) == 0


def test_twap_minimum_is_uniswaps_quote_at_the_average_price_less_slippage(buyback, pod_pair, stablecoin):
    _wait(WINDOW + 1)
    amount = CAP
    # With no trade since deployment, the average price is the reserves' ratio and the virtual reserves are
    # the real ones (up to square-root rounding): the minimum is getAmountOut less the allowance.
    reserve0, reserve1, _ = pod_pair.getReserves()
    usd_reserve, pod_reserve = (
        (reserve0, reserve1) if pod_pair.token0() == stablecoin else (reserve1, reserve0)
    )
    price = pod_reserve * Q112 // usd_reserve
    depth = reserve0 * reserve1
    virtual_usd, virtual_pod = isqrt(depth * Q112 // price), isqrt(depth * price // Q112)
    quote = amount * 997 * virtual_pod // (virtual_usd * 1000 + amount * 997)
    assert buyback.twapMinimumOut(amount) == quote * (10_000 - SLIPPAGE_BPS) // 10_000
    spot = _spot_quote(pod_pair, stablecoin, amount)
    assert abs(quote - spot) <= spot // 10**9
    # The buyback itself fills at the spot quote, inside the allowance.
    assert spot > buyback.twapMinimumOut(amount)


def test_keeper_floor_above_achievable_output_reverts(buyback, keeper, pod_pair, stablecoin):
    _wait(WINDOW + 1)
    amount = 1_000 * USD_UNIT
    with brownie.reverts("UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"):
        buyback.buyback(amount, _spot_quote(pod_pair, stablecoin, amount) + 1, _deadline(), {"from": keeper})


def test_sandwich_front_run_makes_the_buyback_revert_and_the_attacker_lose(
    buyback, uniswap, stablecoin, pod, pod_pair, keeper, accounts
):
    attacker = accounts[8]
    _wait(WINDOW + 1)
    bait = 200_000 * USD_UNIT
    stablecoin.mint(attacker, bait, {"from": attacker})
    stablecoin.approve(uniswap.router, 2**256 - 1, {"from": attacker})
    pod.approve(uniswap.router, 2**256 - 1, {"from": attacker})

    # Front-run: buy POD right before the keeper, pushing the spot price of POD up ~44%.
    uniswap.router.swapExactTokensForTokens(
        bait, 0, [stablecoin, pod], attacker, _deadline(), {"from": attacker}
    )
    pod_bought = pod.balanceOf(attacker)
    amount = CAP
    twap_min = buyback.twapMinimumOut(amount)
    assert _spot_quote(pod_pair, stablecoin, amount) < twap_min  # the manipulated fill would be worse
    with brownie.reverts("UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"):
        buyback.buyback(amount, 0, _deadline(), {"from": keeper})
    assert stablecoin.balanceOf(buyback) == REVENUE

    # Back-run: with no victim in between, selling the POD back returns less than the attacker paid.
    uniswap.router.swapExactTokensForTokens(
        pod_bought, 0, [pod, stablecoin], attacker, _deadline(), {"from": attacker}
    )
    assert pod.balanceOf(attacker) == 0
    assert stablecoin.balanceOf(attacker) < bait


def test_sandwich_inside_the_allowance_takes_at_most_the_allowance(
    buyback, uniswap, stablecoin, pod, keeper, accounts
):
    attacker = accounts[8]
    _wait(WINDOW + 1)
    budget = 2_000 * USD_UNIT
    stablecoin.mint(attacker, budget, {"from": attacker})
    stablecoin.approve(uniswap.router, 2**256 - 1, {"from": attacker})
    pod.approve(uniswap.router, 2**256 - 1, {"from": attacker})
    # A push small enough (~0.4% on the price) that the keeper's swap still clears the TWAP minimum.
    uniswap.router.swapExactTokensForTokens(
        budget, 0, [stablecoin, pod], attacker, _deadline(), {"from": attacker}
    )
    buyback.buyback(CAP, 0, _deadline(), {"from": keeper})
    uniswap.router.swapExactTokensForTokens(
        pod.balanceOf(attacker), 0, [pod, stablecoin], attacker, _deadline(), {"from": attacker}
    )
    profit = stablecoin.balanceOf(attacker) - budget
    assert profit <= CAP * SLIPPAGE_BPS // 10_000


def test_sustained_manipulation_shorter_than_the_window_still_fails(
    buyback, uniswap, stablecoin, pod, keeper, accounts
):
    attacker = accounts[8]
    stablecoin.mint(attacker, 200_000 * USD_UNIT, {"from": attacker})
    stablecoin.approve(uniswap.router, 2**256 - 1, {"from": attacker})
    _wait(WINDOW - 300)
    uniswap.router.swapExactTokensForTokens(
        200_000 * USD_UNIT, 0, [stablecoin, pod], attacker, _deadline(), {"from": attacker}
    )
    # The manipulated price now weighs in the average for ~300 s out of ~1800 s: not enough.
    _wait(301)
    with brownie.reverts("UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"):
        buyback.buyback(CAP, 0, _deadline(), {"from": keeper})


def test_price_moved_in_the_buybacks_favour_is_fine(buyback, uniswap, pod, treasury, keeper, stablecoin):
    _wait(WINDOW + 1)
    pod.approve(uniswap.router, 2**256 - 1, {"from": treasury})
    uniswap.router.swapExactTokensForTokens(
        1_000_000 * POD_UNIT, 0, [pod, stablecoin], treasury, _deadline(), {"from": treasury}
    )
    tx = buyback.buyback(CAP, 0, _deadline(), {"from": keeper})
    assert tx.return_value > buyback.twapMinimumOut(CAP)


def test_twap_not_ready_right_after_deployment(buyback, keeper):
    with brownie.reverts(revert_pattern=r"BuybackTwapNotReady: .*"):
        buyback.twapMinimumOut(1_000 * USD_UNIT)
    with brownie.reverts(revert_pattern=r"BuybackTwapNotReady: .*"):
        buyback.buyback(1_000 * USD_UNIT, 0, _deadline(), {"from": keeper})


def test_stale_observation_reverts_until_observed_again(buyback, keeper):
    _wait(3 * WINDOW + 10)
    with brownie.reverts(revert_pattern=r"BuybackTwapStale: .*"):
        buyback.buyback(1_000 * USD_UNIT, 0, _deadline(), {"from": keeper})
    buyback.observe({"from": keeper})
    with brownie.reverts(revert_pattern=r"BuybackTwapNotReady: .*"):
        buyback.buyback(1_000 * USD_UNIT, 0, _deadline(), {"from": keeper})
    _wait(WINDOW)
    buyback.buyback(1_000 * USD_UNIT, 0, _deadline(), {"from": keeper})


def test_observe_at_most_once_per_window_and_older_slot_keeps_twap_usable(buyback, keeper):
    with brownie.reverts(revert_pattern=r"BuybackObservationTooSoon: .*"):
        buyback.observe({"from": keeper})
    _wait(WINDOW)
    buyback.observe({"from": keeper})
    older, newer = buyback.observations()
    assert newer[1] - older[1] >= WINDOW
    # The newest observation is too young, but the older one is a window old: a buyback still goes through.
    buyback.buyback(1_000 * USD_UNIT, 0, _deadline(), {"from": keeper})


def test_only_keepers_choose_where_a_twap_starts(buyback, accounts):
    """Low finding: anyone could time `observe`, choosing the anchor of the average."""
    _wait(WINDOW)
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        buyback.observe({"from": accounts[9]})
    assert buyback.MIN_TWAP_WINDOW() == 30 * 60


def test_call_guards(buyback, keeper, accounts, stablecoin, deployer):
    _wait(WINDOW + 1)
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        buyback.buyback(1_000 * USD_UNIT, 0, _deadline(), {"from": accounts[9]})
    with brownie.reverts(revert_pattern=r"BuybackExpired: .*"):
        buyback.buyback(1_000 * USD_UNIT, 0, chain[-1].timestamp - 1, {"from": keeper})
    with brownie.reverts("BuybackZeroAmount: "):
        buyback.buyback(0, 0, _deadline(), {"from": keeper})
    with brownie.reverts(revert_pattern=r"BuybackAmountAboveCap: .*"):
        buyback.buyback(CAP + 1, 0, _deadline(), {"from": keeper})
    buyback.setMaxSwapAmount(REVENUE * 2, {"from": deployer})
    with brownie.reverts(revert_pattern=r"BuybackInsufficientBalance: .*"):
        buyback.buyback(REVENUE + 1, 0, _deadline(), {"from": keeper})


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        ("setTwapWindow", 1799),
        ("setTwapWindow", 86401),
        ("setMaxSlippageBps", 9),
        ("setMaxSlippageBps", 2001),
        ("setMaxSwapAmount", 0),
    ],
)
def test_settings_are_bounded(buyback, deployer, setter, value):
    with brownie.reverts(revert_pattern=r"BuybackSettingOutOfBounds: .*"):
        getattr(buyback, setter)(value, {"from": deployer})


def test_settings_apply_and_are_admin_only(buyback, deployer, keeper):
    buyback.setTwapWindow(3600, {"from": deployer})
    buyback.setMaxSlippageBps(100, {"from": deployer})
    buyback.setMaxSwapAmount(1, {"from": deployer})
    assert (buyback.twapWindow(), buyback.maxSlippageBps(), buyback.maxSwapAmount()) == (3600, 100, 1)
    for setter in ("setTwapWindow", "setMaxSlippageBps", "setMaxSwapAmount", "setDestination"):
        with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
            getattr(buyback, setter)(1, {"from": keeper})
