"""Credits: deposits, delayed withdrawals, quorum-signed debit batches (EIP-712), revenue to the buyback."""

import brownie
import pytest
from brownie import chain
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from chain.quorum import debit_batch_digest, debit_batch_signature, quorum_order
from protocols import eth
from tests.contracts.conftest import (
    EIP712_NAME,
    EIP712_VERSION,
    USD_UNIT,
    ChainStateMachine,
    run_chain_state_machine,
    sign_typed,
)
from tests.eip712 import typed_data
from tests.examples import examples

DELAY = 3 * 86400
PRICE = 2 * USD_UNIT  # the default price: 2 lUSD per million tokens
DEBIT_BATCH_FIELDS = [
    {"name": "batchId", "type": "uint256"},
    {"name": "users", "type": "address[]"},
    {"name": "amounts", "type": "uint256[]"},
    {"name": "deadline", "type": "uint256"},
]
# Cross-part agreement (crosspart.md): the type string validators sign.
DEBIT_BATCH_TYPE = "CreditDebitBatch(uint256 batchId,address[] users,uint256[] amounts,uint256 deadline)"


@pytest.fixture(scope="module")
def revenue(accounts):
    """Stands for the revenue recipient in unit tests (the Buyback in the end-to-end test)."""
    return accounts[7]


@pytest.fixture(scope="module")
def credits(Credits, stablecoin, validator_quorum, validators, revenue, deployer):
    return Credits.deploy(stablecoin, validator_quorum, revenue, DELAY, PRICE, deployer, {"from": deployer})


@pytest.fixture(scope="module")
def users(accounts, stablecoin, credits):
    """Three API users holding 1,000 lUSD each, with the Credits contract approved."""
    chosen = [accounts[4], accounts[5], accounts[6]]
    for user in chosen:
        stablecoin.mint(user, 1_000 * USD_UNIT, {"from": user})
        stablecoin.approve(credits, 2**256 - 1, {"from": user})
    return chosen


def batch_signatures(credits, signers, batch_id, users, amounts, deadline):
    """Signatures of `signers` (ascending by address, as the quorum requires) over one debit batch."""
    message = {
        "batchId": batch_id,
        "users": [str(u) for u in users],
        "amounts": amounts,
        "deadline": deadline,
    }
    return [
        sign_typed(s.private_key, credits, "CreditDebitBatch", DEBIT_BATCH_FIELDS, message) for s in signers
    ]


def settle(credits, validators, batch_id, users, amounts, deadline=None, signers=None, sender=None):
    deadline = chain[-1].timestamp + 3600 if deadline is None else deadline
    signers = validators[1:] if signers is None else signers  # weights 2+3+4 of 10: above two thirds
    signatures = batch_signatures(credits, signers, batch_id, users, amounts, deadline)
    # Relayed by a node-held account: after a chain revert (stateful test) Brownie reports a locally signed,
    # byte-identical transaction as "dropped", its hash being known already.
    relayer = sender or brownie.accounts[0]
    return credits.settleDebits(batch_id, users, amounts, deadline, signatures, {"from": relayer})


def _request_of(credits, user):
    amount, unlock_time = credits.withdrawalRequestOf(user)
    return int(amount), int(unlock_time)


def _wait(seconds):
    chain.sleep(seconds)
    chain.mine()


# ---------------------------------------------------------------- deposits


def test_payment_token_stand_in_is_a_six_decimals_faucet(stablecoin, accounts):
    assert (stablecoin.decimals(), stablecoin.symbol()) == (6, "lUSD")
    stablecoin.mint(accounts[9], 5 * USD_UNIT, {"from": accounts[8]})
    assert stablecoin.balanceOf(accounts[9]) == 5 * USD_UNIT


def test_deposit_credits_the_caller(credits, stablecoin, users):
    tx = credits.deposit(100 * USD_UNIT, {"from": users[0]})
    assert credits.creditOf(users[0]) == 100 * USD_UNIT
    assert credits.totalCredit() == stablecoin.balanceOf(credits) == 100 * USD_UNIT
    assert tx.events["Deposited"]["user"] == tx.events["Deposited"]["from"] == users[0]


def test_deposit_for_credits_another_user(credits, users):
    credits.depositFor(users[1], 40 * USD_UNIT, {"from": users[0]})
    assert credits.creditOf(users[1]) == 40 * USD_UNIT
    assert credits.creditOf(users[0]) == 0


def test_deposit_reverts(credits, users, accounts):
    with brownie.reverts("CreditsZeroAmount: "):
        credits.deposit(0, {"from": users[0]})
    with brownie.reverts("CreditsZeroAddress: "):
        credits.depositFor(brownie.ZERO_ADDRESS, 1, {"from": users[0]})
    with brownie.reverts(revert_pattern=r"ERC20InsufficientAllowance: .*"):
        credits.deposit(1, {"from": accounts[8]})
    with brownie.reverts(revert_pattern=r"ERC20InsufficientBalance: .*"):
        credits.deposit(1_001 * USD_UNIT, {"from": users[0]})


def test_constructor_checks(Credits, stablecoin, validator_quorum, revenue, deployer):
    with brownie.reverts("CreditsZeroAddress: "):
        Credits.deploy(
            brownie.ZERO_ADDRESS, validator_quorum, revenue, DELAY, PRICE, deployer, {"from": deployer}
        )
    with brownie.reverts("CreditsZeroAddress: "):
        Credits.deploy(
            stablecoin, validator_quorum, brownie.ZERO_ADDRESS, DELAY, PRICE, deployer, {"from": deployer}
        )
    with brownie.reverts(revert_pattern=r"CreditsDelayOutOfBounds: .*"):
        Credits.deploy(stablecoin, validator_quorum, revenue, 3600, PRICE, deployer, {"from": deployer})
    with brownie.reverts(revert_pattern=r"CreditsPriceOutOfBounds: .*"):
        Credits.deploy(stablecoin, validator_quorum, revenue, DELAY, 10**12 + 1, deployer, {"from": deployer})


# ---------------------------------------------------------------- prices


def test_models_cost_the_default_price_until_governance_prices_them(credits, deployer, accounts):
    model = keccak(b"some model manifest")
    assert credits.priceOf(model) == PRICE
    tx = credits.setPrice(model, 5 * USD_UNIT, {"from": deployer})
    assert tx.events["PriceSet"]["model"] == "0x" + model.hex()
    assert credits.priceOf(model) == 5 * USD_UNIT
    assert credits.priceOf(keccak(b"another model")) == PRICE
    credits.setPrice(model, 0, {"from": deployer})  # back to the default
    assert credits.priceOf(model) == PRICE
    credits.setPrice(b"\0" * 32, 3 * USD_UNIT, {"from": deployer})  # the zero model sets the default
    assert credits.priceOf(model) == 3 * USD_UNIT
    credits.setPrice(b"\0" * 32, PRICE, {"from": deployer})
    with brownie.reverts(revert_pattern=r"OwnableUnauthorizedAccount: .*"):
        credits.setPrice(model, 1, {"from": accounts[5]})
    with brownie.reverts(revert_pattern=r"CreditsPriceOutOfBounds: .*"):
        credits.setPrice(model, 10**12 + 1, {"from": deployer})


# ---------------------------------------------------------------- withdrawals


def test_withdrawal_waits_for_the_delay(credits, stablecoin, users):
    user = users[0]
    credits.deposit(100 * USD_UNIT, {"from": user})
    tx = credits.requestWithdrawal(60 * USD_UNIT, {"from": user})
    unlock = tx.events["WithdrawalRequested"]["unlockTime"]
    assert unlock == tx.timestamp + DELAY
    assert _request_of(credits, user) == (60 * USD_UNIT, unlock)
    with brownie.reverts(revert_pattern=r"CreditsWithdrawalLocked: .*"):
        credits.withdraw({"from": user})
    _wait(DELAY)
    balance = stablecoin.balanceOf(user)
    tx = credits.withdraw({"from": user})
    assert tx.return_value == 60 * USD_UNIT
    assert stablecoin.balanceOf(user) == balance + 60 * USD_UNIT
    assert credits.creditOf(user) == 40 * USD_UNIT
    assert _request_of(credits, user) == (0, 0)
    with brownie.reverts(revert_pattern=r"CreditsNoWithdrawalRequest: .*"):
        credits.withdraw({"from": user})


def test_new_request_restarts_the_wait(credits, users):
    user = users[0]
    credits.deposit(100 * USD_UNIT, {"from": user})
    credits.requestWithdrawal(10 * USD_UNIT, {"from": user})
    _wait(DELAY - 100)
    credits.requestWithdrawal(20 * USD_UNIT, {"from": user})
    _wait(200)
    with brownie.reverts(revert_pattern=r"CreditsWithdrawalLocked: .*"):
        credits.withdraw({"from": user})


def test_request_reverts(credits, users):
    with brownie.reverts("CreditsZeroAmount: "):
        credits.requestWithdrawal(0, {"from": users[0]})
    credits.deposit(5 * USD_UNIT, {"from": users[0]})
    with brownie.reverts(revert_pattern=r"CreditsInsufficientCredit: .*"):
        credits.requestWithdrawal(5 * USD_UNIT + 1, {"from": users[0]})


def test_cancel_withdrawal(credits, users):
    with brownie.reverts(revert_pattern=r"CreditsNoWithdrawalRequest: .*"):
        credits.cancelWithdrawal({"from": users[0]})
    credits.deposit(5 * USD_UNIT, {"from": users[0]})
    credits.requestWithdrawal(5 * USD_UNIT, {"from": users[0]})
    tx = credits.cancelWithdrawal({"from": users[0]})
    assert "WithdrawalCancelled" in tx.events
    _wait(DELAY)
    with brownie.reverts(revert_pattern=r"CreditsNoWithdrawalRequest: .*"):
        credits.withdraw({"from": users[0]})


def test_debits_during_the_wait_are_not_escaped(credits, stablecoin, users, validators, revenue):
    user = users[0]
    credits.deposit(100 * USD_UNIT, {"from": user})
    credits.requestWithdrawal(100 * USD_UNIT, {"from": user})
    settle(credits, validators, 1, [user], [70 * USD_UNIT])
    _wait(DELAY)
    balance = stablecoin.balanceOf(user)
    assert credits.withdraw({"from": user}).return_value == 30 * USD_UNIT
    assert stablecoin.balanceOf(user) == balance + 30 * USD_UNIT
    assert stablecoin.balanceOf(revenue) == 70 * USD_UNIT


def test_withdraw_after_everything_was_debited_pays_zero(credits, stablecoin, users, validators):
    user = users[0]
    credits.deposit(10 * USD_UNIT, {"from": user})
    credits.requestWithdrawal(10 * USD_UNIT, {"from": user})
    settle(credits, validators, 1, [user], [10 * USD_UNIT])
    _wait(DELAY)
    tx = credits.withdraw({"from": user})
    assert tx.return_value == 0
    assert "Transfer" not in tx.events
    assert _request_of(credits, user) == (0, 0)


# ---------------------------------------------------------------- settlement


def test_digest_matches_eip712_typed_data(credits, users):
    assert credits.CREDIT_DEBIT_BATCH_TYPEHASH() == "0x" + keccak(text=DEBIT_BATCH_TYPE).hex()
    deadline = 1_900_000_000
    message = {"batchId": 7, "users": [str(u) for u in users[:2]], "amounts": [3, 4], "deadline": deadline}
    typed = typed_data(
        "CreditDebitBatch",
        DEBIT_BATCH_FIELDS,
        message,
        chain_id=chain.id,
        verifying_contract=credits.address,
        name=EIP712_NAME,
        version=EIP712_VERSION,
    )
    signable = encode_typed_data(full_message=typed)
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert credits.debitBatchDigest(7, users[:2], [3, 4], deadline) == "0x" + expected.hex()


def test_settle_debits_users_and_pays_revenue(credits, stablecoin, users, validators, revenue):
    for user in users:
        credits.deposit(100 * USD_UNIT, {"from": user})
    amounts = [10 * USD_UNIT, 0, 25 * USD_UNIT]
    tx = settle(credits, validators, 42, users, amounts)
    assert [credits.creditOf(u) for u in users] == [90 * USD_UNIT, 100 * USD_UNIT, 75 * USD_UNIT]
    assert stablecoin.balanceOf(revenue) == 35 * USD_UNIT
    assert credits.totalRevenue() == 35 * USD_UNIT
    assert credits.totalCredit() == stablecoin.balanceOf(credits) == 265 * USD_UNIT
    assert credits.isSettled(42)
    assert tx.events["BatchSettled"]["total"] == 35 * USD_UNIT
    assert len(tx.events["Debited"]) == 3


def test_same_user_twice_in_a_batch_is_debited_twice(credits, users, validators):
    credits.deposit(100 * USD_UNIT, {"from": users[0]})
    settle(credits, validators, 1, [users[0], users[0]], [30 * USD_UNIT, 50 * USD_UNIT])
    assert credits.creditOf(users[0]) == 20 * USD_UNIT


def test_anyone_may_relay_a_signed_batch(credits, users, validators, accounts):
    credits.deposit(100 * USD_UNIT, {"from": users[0]})
    settle(credits, validators, 1, [users[0]], [USD_UNIT], sender=accounts[9])
    assert credits.creditOf(users[0]) == 99 * USD_UNIT


def test_replayed_batch_reverts(credits, users, validators):
    credits.deposit(100 * USD_UNIT, {"from": users[0]})
    deadline = chain[-1].timestamp + 3600
    settle(credits, validators, 5, [users[0]], [USD_UNIT], deadline=deadline)
    with brownie.reverts(revert_pattern=r"CreditsBatchAlreadySettled: .*"):
        settle(credits, validators, 5, [users[0]], [USD_UNIT], deadline=deadline)
    assert credits.creditOf(users[0]) == 99 * USD_UNIT


def test_expired_batch_reverts(credits, users, validators):
    credits.deposit(100 * USD_UNIT, {"from": users[0]})
    deadline = chain[-1].timestamp + 60
    _wait(120)
    with brownie.reverts(revert_pattern=r"CreditsBatchExpired: .*"):
        settle(credits, validators, 1, [users[0]], [USD_UNIT], deadline=deadline)


@pytest.mark.parametrize("shape", ["mismatch", "empty", "too_large"])
def test_malformed_batch_reverts(credits, users, validators, shape):
    user_list, amounts = {
        "mismatch": ([users[0]], [1, 2]),
        "empty": ([], []),
        "too_large": ([users[0]] * 501, [0] * 501),
    }[shape]
    with brownie.reverts(revert_pattern=r"CreditsInvalidBatch: .*"):
        settle(credits, validators, 1, user_list, amounts)


def test_a_withdrawal_that_lands_first_does_not_void_the_others_debits(
    credits, stablecoin, users, validators, revenue
):
    """Attack: a user withdraws before the batch that debits it lands. It is debited what is left; the
    other users of the batch are debited in full (the batch used to revert whole)."""
    for user in users:
        credits.deposit(10 * USD_UNIT, {"from": user})
    credits.requestWithdrawal(10 * USD_UNIT, {"from": users[1]})
    _wait(DELAY)
    credits.withdraw({"from": users[1]})
    tx = settle(credits, validators, 1, users, [5 * USD_UNIT, 4 * USD_UNIT, 10 * USD_UNIT])
    assert credits.isSettled(1)
    assert [credits.creditOf(u) for u in users] == [5 * USD_UNIT, 0, 0]
    assert dict(tx.events["DebitShortfall"]) == {
        "batchId": 1,
        "user": users[1],
        "amount": 4 * USD_UNIT,
        "debited": 0,
    }
    assert [e["amount"] for e in tx.events["Debited"]] == [5 * USD_UNIT, 0, 10 * USD_UNIT]
    assert stablecoin.balanceOf(revenue) == credits.totalRevenue() == 15 * USD_UNIT
    assert credits.totalCredit() == stablecoin.balanceOf(credits) == 5 * USD_UNIT


def test_pending_withdrawals_are_not_spendable(credits, users):
    user = users[0]
    credits.deposit(10 * USD_UNIT, {"from": user})
    assert credits.spendableOf(user) == 10 * USD_UNIT
    tx = credits.requestWithdrawal(4 * USD_UNIT, {"from": user})
    assert credits.spendableOf(user) == 6 * USD_UNIT
    assert credits.creditOf(user) == 10 * USD_UNIT  # still debitable while it waits
    credit, withdrawing, requested_at = credits.creditsOf([user, users[1]])
    assert (list(credit), list(withdrawing)) == ([10 * USD_UNIT, 0], [4 * USD_UNIT, 0])
    assert list(requested_at) == [chain[tx.block_number].timestamp, 0]
    credits.requestWithdrawal(10 * USD_UNIT, {"from": user})
    assert credits.spendableOf(user) == 0
    credits.cancelWithdrawal({"from": user})
    assert credits.spendableOf(user) == 10 * USD_UNIT


def test_quorum_is_required(credits, users, validators):
    credits.deposit(10 * USD_UNIT, {"from": users[0]})
    # Weights 1+2+3 of 10 are below two thirds.
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        settle(credits, validators, 1, [users[0]], [USD_UNIT], signers=validators[:3])
    with brownie.reverts(revert_pattern=r"ValidatorQuorumSignersNotAscending: .*"):
        settle(credits, validators, 1, [users[0]], [USD_UNIT], signers=list(reversed(validators)))


def test_tampered_batch_does_not_verify(credits, users, validators):
    credits.deposit(10 * USD_UNIT, {"from": users[0]})
    deadline = chain[-1].timestamp + 3600
    signatures = batch_signatures(credits, validators[1:], 1, [users[0]], [USD_UNIT], deadline)
    # A relayer raising the amount changes the digest: the signatures recover to strangers.
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotReached|SignersNotAscending): .*"):
        credits.settleDebits(1, [users[0]], [2 * USD_UNIT], deadline, signatures, {"from": users[0]})
    assert credits.creditOf(users[0]) == 10 * USD_UNIT


def test_signatures_for_another_contract_do_not_verify(Credits, credits, stablecoin, validator_quorum, users,
                                                        validators, revenue, deployer):  # fmt: skip
    other = Credits.deploy(stablecoin, validator_quorum, revenue, DELAY, PRICE, deployer, {"from": deployer})
    credits.deposit(10 * USD_UNIT, {"from": users[0]})
    deadline = chain[-1].timestamp + 3600
    signatures = batch_signatures(other, validators[1:], 1, [users[0]], [USD_UNIT], deadline)
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotReached|SignersNotAscending): .*"):
        credits.settleDebits(1, [users[0]], [USD_UNIT], deadline, signatures, {"from": users[0]})


def test_a_batch_cannot_be_signed_to_be_played_much_later(credits, users, validators):
    """Low finding: signed decisions had no maximum deadline."""
    credits.deposit(10 * USD_UNIT, {"from": users[0]})
    with brownie.reverts(revert_pattern=r"CreditsDeadlineTooFar: .*"):
        settle(credits, validators, 1, [users[0]], [USD_UNIT], deadline=chain[-1].timestamp + 8 * 86400)
    settle(credits, validators, 1, [users[0]], [USD_UNIT], deadline=chain[-1].timestamp + 6 * 86400)


def test_a_fee_on_transfer_token_is_refused(Credits, FeeOnTransferToken, validator_quorum, revenue, users,
                                             deployer):  # fmt: skip
    """Low finding: a token that delivers less than asked would create credit that nothing backs."""
    token = FeeOnTransferToken.deploy({"from": deployer})
    credits = Credits.deploy(token, validator_quorum, revenue, DELAY, PRICE, deployer, {"from": deployer})
    token.mint(users[0], 1_000 * USD_UNIT, {"from": users[0]})
    token.approve(credits, 2**256 - 1, {"from": users[0]})
    with brownie.reverts(revert_pattern=r"CreditsTransferShortfall: .*"):
        credits.deposit(100 * USD_UNIT, {"from": users[0]})
    assert credits.totalCredit() == token.balanceOf(credits) == 0


def test_a_batch_signed_as_validators_sign_it_settles(credits, users, validators):
    """Cross-part check: the one signer of debit batches (chain.quorum, what the validator daemon and
    ChainClient use) and Credits hash CreditDebitBatch alike."""
    assert credits.CREDIT_DEBIT_BATCH_TYPEHASH() == "0x" + eth.CREDIT_DEBIT_BATCH.type_hash.hex()
    credits.deposit(100 * USD_UNIT, {"from": users[0]})
    credits.deposit(100 * USD_UNIT, {"from": users[1]})
    deadline = chain[-1].timestamp + 3600
    users_bytes = [bytes.fromhex(u.address[2:]) for u in users[:2]]
    amounts = [USD_UNIT, 2 * USD_UNIT]
    domain = eth.TypedDomain("Dolphin Network", "1", chain.id, bytes.fromhex(credits.address[2:]))
    signed = [
        debit_batch_signature(
            eth.EthAccount(bytes.fromhex(v.private_key[2:])), domain, 9, users_bytes, amounts, deadline
        )
        for v in validators[1:]
    ]
    digest = debit_batch_digest(domain, 9, users_bytes, amounts, deadline)
    assert bytes(credits.debitBatchDigest(9, users[:2], amounts, deadline)) == digest
    signatures = quorum_order({s.validator: s.signature for s in signed})
    credits.settleDebits(9, users[:2], amounts, deadline, signatures, {"from": users[0]})
    assert [credits.creditOf(u) for u in users[:2]] == [99 * USD_UNIT, 98 * USD_UNIT]


# ---------------------------------------------------------------- governance


def test_setters_are_owner_only_and_bounded(credits, deployer, users, accounts):
    with brownie.reverts(revert_pattern=r"OwnableUnauthorizedAccount: .*"):
        credits.setWithdrawalDelay(86400, {"from": users[0]})
    with brownie.reverts(revert_pattern=r"OwnableUnauthorizedAccount: .*"):
        credits.setRevenueRecipient(users[0], {"from": users[0]})
    for delay in (86400 - 1, 30 * 86400 + 1):
        with brownie.reverts(revert_pattern=r"CreditsDelayOutOfBounds: .*"):
            credits.setWithdrawalDelay(delay, {"from": deployer})
    with brownie.reverts("CreditsZeroAddress: "):
        credits.setRevenueRecipient(brownie.ZERO_ADDRESS, {"from": deployer})
    credits.setWithdrawalDelay(86400, {"from": deployer})
    credits.setRevenueRecipient(accounts[9], {"from": deployer})
    assert (credits.withdrawalDelay(), credits.revenueRecipient()) == (86400, accounts[9])


# ---------------------------------------------------------------- end to end


def test_revenue_is_bought_back_into_pod_for_stakers(
    Credits,
    Buyback,
    stablecoin,
    pod,
    stkpod,
    uniswap,
    pod_pair,
    validator_quorum,
    validators,
    users,
    deployer,
):
    buyback = Buyback.deploy(
        uniswap.router, stablecoin, pod, stkpod, deployer, 1800, 300, 10_000 * USD_UNIT, {"from": deployer}
    )
    buyback.grantRole(buyback.KEEPER_ROLE(), deployer, {"from": deployer})
    credits = Credits.deploy(
        stablecoin, validator_quorum, buyback, DELAY, PRICE, deployer, {"from": deployer}
    )
    stablecoin.approve(credits, 2**256 - 1, {"from": users[0]})
    credits.deposit(500 * USD_UNIT, {"from": users[0]})
    settle(credits, validators, 1, [users[0]], [400 * USD_UNIT])
    assert stablecoin.balanceOf(buyback) == 400 * USD_UNIT

    _wait(1801)
    vault_before = pod.balanceOf(stkpod)
    tx = buyback.buyback(400 * USD_UNIT, 0, chain[-1].timestamp + 600, {"from": deployer})
    assert pod.balanceOf(stkpod) == vault_before + tx.return_value > vault_before
    assert stablecoin.balanceOf(buyback) == 0


# ---------------------------------------------------------------- stateful: credits are conserved

USER = st.integers(min_value=0, max_value=2)
BPS = st.integers(min_value=0, max_value=10_000)


class CreditsConservation(ChainStateMachine):
    """Random deposits, withdrawal requests and withdrawals, time travel and signed debit batches.

    Invariants: the token balance held equals the total credit and the sum of every user's credit; what
    came in (deposits) equals what is held plus what left (withdrawals and revenue); a batch id settles once.
    """

    def __init__(self):
        super().__init__()
        self.deposited = self.withdrawn = self.debited = 0
        self.credit = [0, 0, 0]
        self.requests = {}
        self.next_batch = 1
        self.last_batch = None

    @rule(user=USER, amount=st.integers(min_value=1, max_value=300 * USD_UNIT))
    def deposit(self, user, amount):
        self.credits.deposit(amount, {"from": self.users[user]})
        self.credit[user] += amount
        self.deposited += amount

    @rule(user=USER, bps=BPS)
    def request(self, user, bps):
        amount = self.credit[user] * bps // 10_000
        if amount == 0:
            with brownie.reverts("CreditsZeroAmount: "):
                self.credits.requestWithdrawal(amount, {"from": self.users[user]})
            return
        tx = self.credits.requestWithdrawal(amount, {"from": self.users[user]})
        self.requests[user] = (amount, tx.timestamp + DELAY)

    @rule(user=USER)
    def overdrawn_request(self, user):
        with brownie.reverts(revert_pattern=r"CreditsInsufficientCredit: .*"):
            self.credits.requestWithdrawal(self.credit[user] + 1, {"from": self.users[user]})

    @rule(seconds=st.integers(min_value=0, max_value=2 * DELAY))
    def sleep(self, seconds):
        _wait(seconds)

    @rule(user=USER)
    def withdraw(self, user):
        sender = self.users[user]
        if user not in self.requests:
            with brownie.reverts(revert_pattern=r"CreditsNoWithdrawalRequest: .*"):
                self.credits.withdraw({"from": sender})
            return
        amount, unlock = self.requests[user]
        now = chain[-1].timestamp
        if now + 30 < unlock:  # clearly still locked (a margin for the next block's timestamp)
            with brownie.reverts(revert_pattern=r"CreditsWithdrawalLocked: .*"):
                self.credits.withdraw({"from": sender})
        elif now >= unlock:
            paid = self.credits.withdraw({"from": sender}).events["Withdrawn"]["amount"]
            assert paid == min(amount, self.credit[user])
            self.credit[user] -= paid
            self.withdrawn += paid
            del self.requests[user]

    @rule(first=USER, first_bps=BPS, second=USER, second_bps=BPS)
    def settle(self, first, first_bps, second, second_bps):
        remaining = list(self.credit)
        amounts = []
        for user, bps in ((first, first_bps), (second, second_bps)):
            amount = remaining[user] * bps // 10_000
            remaining[user] -= amount
            amounts.append(amount)
        batch = (self.next_batch, [self.users[first], self.users[second]], amounts)
        settle(self.credits, self.validators, *batch)
        self.credit = remaining
        self.debited += sum(amounts)
        self.next_batch += 1
        self.last_batch = batch

    @rule(user=USER)
    def overdraft_batch(self, user):
        """A debit above what is left takes what is left and still settles the batch."""
        asked = self.credit[user] + 1
        tx = settle(self.credits, self.validators, self.next_batch, [self.users[user]], [asked])
        assert tx.events["DebitShortfall"]["debited"] == self.credit[user]
        self.debited += self.credit[user]
        self.credit[user] = 0
        self.last_batch = (self.next_batch, [self.users[user]], [asked])
        self.next_batch += 1

    @precondition(lambda self: self.last_batch is not None)
    @rule()
    def replay_batch(self):
        with brownie.reverts(revert_pattern=r"CreditsBatchAlreadySettled: .*"):
            settle(self.credits, self.validators, *self.last_batch)

    @invariant()
    def credit_is_conserved(self):
        credits = [self.credits.creditOf(u) for u in self.users]
        assert credits == self.credit
        held = self.stablecoin.balanceOf(self.credits)
        assert held == self.credits.totalCredit() == sum(credits)
        assert self.deposited == held + self.withdrawn + self.debited
        assert self.stablecoin.balanceOf(self.revenue) == self.credits.totalRevenue() == self.debited


@pytest.mark.slow
def test_stateful_credits_are_conserved(credits, stablecoin, users, validators, revenue):
    for user in users:
        stablecoin.mint(user, 100_000 * USD_UNIT, {"from": user})  # enough for every deposit a run can make
    machine = CreditsConservation.bind(
        credits=credits, stablecoin=stablecoin, users=users, validators=validators, revenue=revenue
    )
    run_chain_state_machine(machine, max_examples=examples(60), steps=15)
