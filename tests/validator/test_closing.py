"""An epoch closed on a real chain: the user's credit falls by exactly price x tokens, the revenue reaches the
buyback, the keeper turns it into POD for stakers, and the operator claims exactly what the engine paid."""

import time
from fractions import Fraction

import pytest

from chain.artifacts import load_npm_artifact
from chain.client import ChainClient, bond_validators
from chain.devchain import mine, time_travel
from chain.rewards import POD
from chain.snapshot import (
    SnapshotError,
    closing_block,
    read_available_credit,
    read_node_operators,
    read_pod_price,
    read_snapshot,
)
from chain.testing import reverted
from chain.transactions import send
from protocols import testing as pt
from protocols.eth import EthAccount, keccak256
from protocols.inference import verify_countersigned_receipt
from protocols.keys import peer_id_from_public_key
from protocols.testing import countersigned_receipt
from validator import receipt_facts
from validator.closing import close_on_chain, find_closing_block, pending_debits
from validator.evidence import SettlementRecord
from validator.keeper import KeeperConfig, keeper_round
from validator.settlement import Carry, DebitBatch

pytestmark = [pytest.mark.integration, pytest.mark.chain]

EPOCH_MS = 10_000
USD = 10**6
DEFAULT_PRICE = USD // 2  # chain.deploy's default: 0.5 lUSD per million tokens


@pytest.fixture(scope="module")
def network(module_deployed_chain):
    """Three validators, an operator whose node is pt.identity(2), an API user with 100 lUSD of credit."""
    deployed = module_deployed_chain
    clients = [ChainClient(deployed.rpc_url, deployed.deployment, key) for key in deployed.keys]
    validators, operator, user = clients[1:4], clients[4], clients[5]
    bond_validators(validators)
    operator.stake(20_000 * POD)
    operator.bond()
    operator.register_node(keccak256(peer_id_from_public_key(pt.identity(2).public_key)))
    user.credits_deposit(100 * USD)
    yield deployed, validators, operator, user


@pytest.fixture(autouse=True)
def _each_test_from_the_same_chain(network):
    with reverted(network[0].w3):
        yield


def _receipts(user: ChainClient, count: int, started_at_ms: int):
    wallet = EthAccount(bytes(user.account.key))
    facts, credits = [], {}
    for n in range(count):
        data = countersigned_receipt(
            wallet=wallet,
            client_n=n + 1,
            started_at_ms=started_at_ms + n,
            prompt=f"question {n}",
            tokens_in=1000 + n,
            tokens_out=n,
            max_tokens=64,
            domain=user.domain("Credits"),
        )
        fact, credit = receipt_facts(verify_countersigned_receipt(data))
        facts.append(fact)
        credits[fact.credit] = credit
    return facts, credits


def _close_and_debit(network):
    """Four receipts of the user's closed at the latest block, and the debits settled by two validators."""
    deployed, validators, operator, user = network
    started = time.time_ns() // 1_000_000
    epoch = started // EPOCH_MS
    facts, credits = _receipts(user, 4, started)
    mine(deployed.w3)
    block = deployed.w3.eth.block_number - 1
    closed = close_on_chain(operator, epoch, EPOCH_MS, block, facts, credits)
    settlement = closed.settlement
    deadline = operator.chain_time() + 3600
    [batch] = settlement.debits
    signatures = [
        v.sign_debit_batch(batch.batch_id, batch.users, batch.amounts, deadline) for v in validators[:2]
    ]
    debited = operator.settle_debits(batch.batch_id, batch.users, batch.amounts, deadline, signatures)
    return epoch, block, facts, settlement, debited


def test_closing_an_epoch_debits_exactly_and_pays_exactly_what_the_engine_computed(network):
    deployed, validators, operator, user = network
    credit_before = user.call("Credits", "creditOf", user.address)
    epoch, block, facts, settlement, debited = _close_and_debit(network)
    tokens = sum(f.tokens for f in facts)
    wallet = bytes.fromhex(user.address[2:])
    assert settlement.payments.debits == {wallet: DEFAULT_PRICE * tokens // 10**6}
    registered = {
        facts[0].node_key and keccak256(peer_id_from_public_key(pt.identity(2).public_key)): operator.address
    }
    assert read_node_operators(operator, block) == registered
    assert read_snapshot(operator, block).node_operators == registered  # what the close pays by
    # The pair's spot price at deployment: 10M POD for 1M lUSD.
    assert read_pod_price(operator, block) == 10 * POD // USD
    assert settlement.emission == DEFAULT_PRICE * tokens * (10 * POD // USD) // 2 // 10**6
    assert settlement.base == {operator.address: settlement.emission}
    assert debited == DEFAULT_PRICE * tokens // 10**6
    assert credit_before - user.call("Credits", "creditOf", user.address) == DEFAULT_PRICE * tokens // 10**6
    assert user.money_status().awaiting_buyback == DEFAULT_PRICE * tokens // 10**6

    deadline = operator.chain_time() + 3600
    tree = settlement.tree
    signatures = [v.sign_epoch_root(epoch, tree, deadline, operator.validator_set()) for v in validators[:2]]
    activates = operator.propose_root(epoch, tree, deadline, signatures, operator.validator_set())
    time_travel(deployed.w3, activates - operator.chain_time())
    operator.activate_root(epoch)
    claimed = operator.claim(tree)
    assert claimed.amount == settlement.paid(operator.address) == settlement.cumulative[operator.address]


def _swap_payment_for_pod(deployed, trader: ChainClient, amount: int) -> None:
    """One swap of `amount` lUSD for POD on the pair (one block), pushing POD's price up."""
    router = deployed.deployment.address("UniswapV2Router02")
    path = [deployed.deployment.address("PaymentToken"), deployed.deployment.address("POD")]
    abi = load_npm_artifact("@uniswap/v2-periphery/build/UniswapV2Router02.json").abi
    swap = deployed.w3.eth.contract(address=router, abi=abi).functions.swapExactTokensForTokens(
        amount, 0, path, trader.address, trader.chain_time() + 600
    )
    send(deployed.w3, trader.account, swap, "the swap")


def _spot(operator: ChainClient, block: int) -> Fraction:
    """POD wei per lUSD unit at the pair's reserves after `block`."""
    pair = operator.contracts["UniswapV2Pair"]
    reserve0, reserve1, _ = pair.functions.getReserves().call(block_identifier=block)
    payment_first = pair.functions.token0().call() == operator.deployment.address("PaymentToken")
    return Fraction(reserve1, reserve0) if payment_first else Fraction(reserve0, reserve1)


def test_a_swap_in_the_closing_block_does_not_move_the_first_revenue_valuation(network):
    """Attack: the network's first settlement valued its revenue at the pair's spot price at the closing
    block, so one swap in that block moved the emission (and the root) as far as the swapper liked. It is
    now valued at the pair's average since the Buyback's TWAP observation (the keeper's), which a swap in
    the closing block does not reach: the root is the same with and without the swap."""
    deployed, _validators, operator, user = network
    trader = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[6])
    router = deployed.deployment.address("UniswapV2Router02")
    trader.transact("PaymentToken", "mint", trader.address, 200_000 * USD)
    trader.transact("PaymentToken", "approve", router, 200_000 * USD)
    started = operator.chain_time() * 1000
    epoch = started // EPOCH_MS
    facts, credits = _receipts(user, 4, started)
    closes = {}
    for pushed in (False, True):
        with reverted(deployed.w3):
            if pushed:
                _swap_payment_for_pod(deployed, trader, 200_000 * USD)
            else:
                mine(deployed.w3)
            mine(deployed.w3)
            block = deployed.w3.eth.block_number - 1
            closes[pushed] = (
                _spot(operator, block),
                close_on_chain(operator, epoch, EPOCH_MS, block, facts, credits),
            )
    (quiet_spot, quiet), (pushed_spot, pushed) = closes[False], closes[True]
    assert quiet_spot == 10 * POD // USD and pushed_spot < quiet_spot * 7 // 10  # the swap moved POD 30%+
    assert quiet.settlement.emission > 0
    assert pushed.settlement.emission == quiet.settlement.emission
    assert pushed.settlement.tree.root == quiet.settlement.tree.root
    # At the Buyback's own deployment block there is no earlier observation to average from.
    buyback = deployed.deployment.address("Buyback")
    first = next(
        b
        for b in range(deployed.deployment.first_block, block)
        if deployed.w3.eth.get_code(buyback, block_identifier=b)
    )
    with pytest.raises(SnapshotError, match="no Buyback price observation"):
        read_pod_price(operator, first)


def test_the_first_valuation_averages_from_the_keepers_observation_once_it_is_a_window_old(network):
    """POD's price doubles; a window later the keeper observes. Right after, that observation is too young
    and the average runs from the deployment's (part old price, part new); a window on, from the keeper's
    (the new price alone), as the keeper's own quote does."""
    deployed, _validators, operator, _user = network
    keeper = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[0])
    trader = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[6])
    trader.transact("PaymentToken", "mint", trader.address, 500_000 * USD)
    trader.transact(
        "PaymentToken", "approve", deployed.deployment.address("UniswapV2Router02"), 500_000 * USD
    )
    _swap_payment_for_pod(deployed, trader, 500_000 * USD)
    moved = _spot(operator, deployed.w3.eth.block_number)
    time_travel(deployed.w3, 1800)
    assert keeper_round(keeper, KeeperConfig()).observed
    mine(deployed.w3)
    young = read_pod_price(operator, deployed.w3.eth.block_number)
    assert moved < young < 10 * POD // USD
    time_travel(deployed.w3, 1800)
    assert abs(read_pod_price(operator, deployed.w3.eth.block_number) - moved) < Fraction(1, 10**6)


def test_a_withdrawal_requested_mid_epoch_does_not_make_the_answers_free(network):
    """Attack: deposit, use the network, ask to withdraw everything before the epoch closes. The request
    came after the epoch began, so the answers are debited (they used to be unpaid: the closing subtracted
    every pending request). A request made before the epoch began is not spendable in it, as nodes saw."""
    deployed, _validators, operator, _user = network
    leaving = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[6])
    leaving.credits_deposit(10 * USD)
    started = operator.chain_time() * 1000
    epoch = started // EPOCH_MS
    facts, credits = _receipts(leaving, 3, started)
    leaving.credits_request_withdrawal(10 * USD)
    mine(deployed.w3)
    block = deployed.w3.eth.block_number - 1
    closed = close_on_chain(operator, epoch, EPOCH_MS, block, facts, credits)
    wallet = bytes.fromhex(leaving.address[2:])
    tokens = sum(f.tokens for f in facts)
    assert closed.settlement.payments.paid == 3
    assert closed.settlement.payments.debits == {wallet: DEFAULT_PRICE * tokens // 10**6}

    leaving.credits_request_withdrawal(4 * USD)
    mine(deployed.w3)
    block = deployed.w3.eth.block_number - 1
    requested_at = deployed.w3.eth.get_block(block)["timestamp"]
    during = read_available_credit(operator, block, [wallet], {}, requested_at)
    after = read_available_credit(operator, block, [wallet], {wallet: USD}, requested_at + 1)
    assert (during, after) == ({wallet: 10 * USD}, {wallet: 5 * USD})


def test_what_the_closing_reads(network):
    deployed, _validators, operator, user = network
    mine(deployed.w3)
    now = operator.chain_time()
    assert find_closing_block(operator, (now + 3600) * 1000 // EPOCH_MS, EPOCH_MS) is None  # in the future
    latest = deployed.w3.eth.block_number
    assert closing_block(operator, now) is None  # the latest block: not strictly in the past yet
    mine(deployed.w3)
    assert closing_block(operator, now) == latest
    # A batch not settled by the closing block is pending against the user's credit.
    wallet = bytes.fromhex(user.address[2:])
    batch = DebitBatch(999, (wallet,), (5,))
    record = SettlementRecord(1, latest, 0, b"", None, (batch,), Carry(), now + 60, {}, "none", frozenset())
    assert pending_debits(operator, latest, now, [record]) == {wallet: 5}
    assert pending_debits(operator, latest, now + 61, [record]) == {}  # expired: never to be debited


def test_the_keeper_buys_back_within_the_twap_and_stakers_gain(network):
    deployed, _validators, _operator, user = network
    keeper = ChainClient(
        deployed.rpc_url, deployed.deployment, deployed.keys[0]
    )  # the dev deployment's keeper
    *_, debited = _close_and_debit(network)
    revenue = user.money_status().awaiting_buyback
    assert revenue == debited > 0
    share_price = user.money_status().share_price
    # Two days on, the deployment's observation is stale: the contract refuses to quote from it, and the
    # keeper records a fresh one; a window later it buys.
    time_travel(deployed.w3, 2 * 86400)
    stale = keeper_round(keeper, KeeperConfig())
    assert stale.refused == "BuybackTwapStale" and stale.observed and stale.amount_in == 0
    time_travel(deployed.w3, 1800)
    done = keeper_round(keeper, KeeperConfig())
    assert done.amount_in == revenue and done.pod_out > 0 and done.refused is None
    status = user.money_status()
    assert status.awaiting_buyback == 0 and status.pod_bought_back == done.pod_out
    time_travel(deployed.w3, 7 * 86400)  # the bought POD vests into the vault
    assert user.money_status().share_price > share_price
    # Nothing left to buy: a round only keeps the TWAP observed.
    assert keeper_round(keeper, KeeperConfig()).amount_in == 0
    # Someone else's account is not a keeper.
    assert not user.has_role("Buyback", "KEEPER_ROLE")


def test_the_keeper_refuses_a_sandwich_the_contracts_bound_alone_would_let_through(network):
    """Attack: revenue waits in the Buyback; someone buys POD just before the keeper's swap, moving the
    price about 2%, within the contract's 3% bound. The keeper's own floor (the TWAP quote less 0.5%)
    refuses the swap; with only the contract's bound, as before, it fills at the moved price."""
    deployed, _validators, _operator, _user = network
    keeper = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[0])
    attacker = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[4])
    time_travel(deployed.w3, 1800)
    keeper_round(keeper, KeeperConfig())  # a fresh observation; nothing to buy yet
    time_travel(deployed.w3, 1800)
    router = deployed.deployment.address("UniswapV2Router02")
    path = [deployed.deployment.address("PaymentToken"), deployed.deployment.address("POD")]
    attacker.transact("PaymentToken", "mint", attacker.address, 10_100 * USD)
    attacker.transact("PaymentToken", "transfer", deployed.deployment.address("Buyback"), 100 * USD)
    attacker.transact("PaymentToken", "approve", router, 10_000 * USD)
    abi = load_npm_artifact("@uniswap/v2-periphery/build/UniswapV2Router02.json").abi
    swap = deployed.w3.eth.contract(address=router, abi=abi).functions.swapExactTokensForTokens(
        10_000 * USD, 0, path, attacker.address, attacker.chain_time() + 600
    )
    send(deployed.w3, attacker.account, swap, "the front-running swap")
    sandwiched = keeper_round(keeper, KeeperConfig())
    assert sandwiched.amount_in == 0 and "INSUFFICIENT_OUTPUT_AMOUNT" in sandwiched.refused
    assert keeper_round(keeper, KeeperConfig(max_slippage_bps=300)).amount_in == 100 * USD
