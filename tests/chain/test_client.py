"""chain.client and chain.transactions: user and operator actions on a deployed Anvil chain, reverts decoded
with hints, a chain that is down, retried reads and transactions that are never resent."""

import time
from types import SimpleNamespace

import pytest
import requests

from chain.client import (
    ChainClient,
    ClientError,
    ExplainedRevert,
    ValidatorSet,
    format_time,
    format_units,
    hint_for,
    parse_units,
    read_key_file,
)
from chain.deploy import DeploymentError
from chain.devchain import time_travel
from chain.merkle import RewardsTree
from chain.testing import unserved_rpc_url
from chain.transactions import ChainUnavailable, TransactionFailed, read, send_signed

POD = 10**18
USD = 10**6
DAY = 86400


@pytest.fixture(scope="module")
def deployed(module_deployed_chain):
    return module_deployed_chain


def client_of(deployed, index):
    return ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[index])


@pytest.mark.chain
def test_stake_cooldown_and_redeem_with_hints_at_each_wrong_moment(deployed):
    user = client_of(deployed, 1)
    shares = user.stake(1_000 * POD)
    status = user.status()
    assert status.staked_shares == shares > 0
    assert status.staked_value == 1_000 * POD

    with pytest.raises(ExplainedRevert) as refused:
        user.redeem()
    assert refused.value.error == "StakedPODNoCooldown"
    assert "run `dolphin chain cooldown`, wait 90 days" in refused.value.hint

    unlock, covered = user.cooldown()
    assert covered == shares and unlock == user.chain_time() + 90 * DAY
    with pytest.raises(ExplainedRevert) as early:
        user.redeem()
    assert early.value.error == "StakedPODCooldownNotFinished"
    assert early.value.error_args[1] == unlock
    assert f"Your cooldown ends at {format_time(unlock)}" in early.value.hint
    assert "(in 90 d 0 h)" in early.value.hint

    time_travel(deployed.w3, 90 * DAY + 1)
    pod_before = user.call("POD", "balanceOf", user.address)
    assert user.redeem() == 1_000 * POD
    assert user.call("POD", "balanceOf", user.address) == pod_before + 1_000 * POD

    user.stake(10 * POD)
    user.cooldown()
    time_travel(deployed.w3, 98 * DAY)
    with pytest.raises(ExplainedRevert) as closed:
        user.redeem()
    assert closed.value.error == "StakedPODUnstakeWindowClosed"
    assert "run `dolphin chain cooldown` again" in closed.value.hint


@pytest.mark.chain
def test_bond_unbond_and_withdraw_after_the_thaw(deployed):
    operator = client_of(deployed, 2)
    operator.stake(5_000 * POD)
    bonded = operator.bond()
    assert operator.status().active_bond_shares == bonded

    request_id, unlock, thawing = operator.unbond(2_000 * POD)
    assert thawing == operator.call("StakedPOD", "convertToShares", 2_000 * POD)
    assert operator.unbond_requests() == [(request_id, unlock, thawing)]
    with pytest.raises(ClientError, match="none of your 1 unbond requests has thawed"):
        operator.withdraw_unbonded()
    with pytest.raises(ExplainedRevert) as early:
        operator.withdraw_unbonded(request_id)
    assert early.value.error == "BondingStillThawing"
    assert "run `dolphin chain withdraw` after that" in early.value.hint

    time_travel(deployed.w3, 90 * DAY + 1)
    assert operator.withdraw_unbonded() == [(request_id, thawing)]
    assert operator.unbond_requests() == []
    assert operator.status().active_bond_shares == bonded - thawing
    with pytest.raises(ClientError, match="no open unbond requests"):
        operator.withdraw_unbonded()


@pytest.mark.chain
def test_joining_the_validators_below_the_minimum_says_how_much_to_bond(deployed):
    small = client_of(deployed, 3)
    small.stake(1_000 * POD)
    small.bond()
    with pytest.raises(ExplainedRevert) as refused:
        small.join_validators()
    assert refused.value.error == "ValidatorQuorumBelowMinimumBond"
    assert "Validators need an active bond worth 100,000 POD" in refused.value.hint
    assert "`dolphin chain bond AMOUNT`" in refused.value.hint


@pytest.mark.chain
def test_roots_carry_the_genesis_set_forward_then_install_an_elected_one(deployed):
    """The validator set the contracts count changes only with an activated root, to the set it signed."""
    from chain.client import bond_validators
    from chain.devchain import dev_genesis_validators
    from chain.testing import settle_root

    genesis = [client_of(deployed, i) for i in (1, 2, 3)]
    reader = ChainClient(deployed.rpc_url, deployed.deployment)
    current = reader.validator_set()
    assert set(current.members) == set(dev_genesis_validators()) and current.epoch == 0
    bond_validators(genesis)
    first = RewardsTree.build({genesis[0].address: POD})
    settle_root(genesis, 1, first)  # carried forward, re-checked: they bonded and joined
    assert reader.validator_set() == ValidatorSet(current.members, current.weights, 1)

    # Epoch 2 elects two of them, weighted by their bonds.
    bonds = {v.address: v.status().active_bond_shares for v in genesis[:2]}
    elected = ValidatorSet.of(bonds)
    settle_root(genesis, 2, RewardsTree.build({genesis[0].address: 2 * POD}), elected)
    assert reader.validator_set() == ValidatorSet(elected.members, elected.weights, 2)
    assert reader.status(genesis[2].address).validator_weight == 0
    assert reader.status(genesis[0].address).validator_weight == bonds[genesis[0].address]

    # The member left out cannot sign alone; a signature made for another next set proves nothing.
    tree = RewardsTree.build({genesis[0].address: 3 * POD})
    deadline = reader.chain_time() + 3600
    with pytest.raises(ExplainedRevert) as refused:
        genesis[0].propose_root(3, tree, deadline, [genesis[2].sign_epoch_root(3, tree, deadline)])
    assert refused.value.error == "ValidatorQuorumNotReached"


@pytest.mark.unit
def test_a_validator_set_is_put_in_the_contracts_order_and_checked():
    a, b = "0x" + "22" * 20, "0x" + "11" * 20
    ordered = ValidatorSet.of({a: 5, b: 7})
    assert ordered.members == (checked(b), checked(a)) and ordered.weights == (7, 5) and ordered.total == 12
    for bad in ({}, {a: 0}):
        with pytest.raises(ClientError):
            ValidatorSet.of(bad)
    with pytest.raises(ClientError):
        ValidatorSet((checked(a), checked(b)), (1, 1))  # not ascending


def checked(address):
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


@pytest.mark.chain
def test_credits_deposit_and_the_two_step_withdrawal(deployed):
    user = client_of(deployed, 4)
    assert user.credits_deposit(100 * USD) == 100 * USD
    with pytest.raises(ExplainedRevert) as nothing:
        user.credits_withdraw()
    assert nothing.value.error == "CreditsNoWithdrawalRequest"
    assert "`dolphin chain credits withdraw AMOUNT`" in nothing.value.hint
    with pytest.raises(ExplainedRevert) as too_much:
        user.credits_request_withdrawal(101 * USD)
    assert too_much.value.error == "CreditsInsufficientCredit"
    assert "Your credit is 100 lUSD, less than the 101 asked for" in too_much.value.hint

    unlock = user.credits_request_withdrawal(40 * USD)
    with pytest.raises(ExplainedRevert) as locked:
        user.credits_withdraw()
    assert locked.value.error_args == (unlock,)
    time_travel(deployed.w3, 3 * DAY)
    assert user.credits_withdraw() == 40 * USD
    assert user.status().credit == 60 * USD


@pytest.mark.chain
def test_a_claim_with_a_tree_that_is_not_the_active_root_is_refused_before_sending(deployed):
    user = client_of(deployed, 5)
    tree = RewardsTree.build({user.address: 5 * POD})
    nonce = deployed.w3.eth.get_transaction_count(user.address)
    with pytest.raises(ClientError, match="is not the active root"):
        user.claim(tree)
    assert deployed.w3.eth.get_transaction_count(user.address) == nonce


@pytest.mark.chain
def test_register_node_signs_the_node_binding_with_the_operator_key(deployed):
    operator = client_of(deployed, 6)
    peer_id_hash = bytes(range(32))
    operator.register_node(peer_id_hash)
    assert operator.call("Bonding", "isNodeOf", operator.address, peer_id_hash)
    with pytest.raises(ExplainedRevert) as twice:
        operator.register_node(peer_id_hash)
    assert twice.value.error == "BondingNodeAlreadyRegistered"


@pytest.mark.chain
def test_reads_need_no_key_and_transactions_say_they_need_one(deployed):
    reader = ChainClient(deployed.rpc_url, deployed.deployment)
    assert reader.status(deployed.deployment.demo_accounts[0]).pod > 0
    with pytest.raises(ClientError, match="--key-file"):
        reader.stake(POD)


@pytest.mark.chain
def test_a_deployment_of_another_chain_is_refused(deployed):
    from dataclasses import replace

    elsewhere = replace(deployed.deployment, genesis_hash="0x" + "11" * 32)
    with pytest.raises(DeploymentError, match="for another chain"):
        ChainClient(deployed.rpc_url, elsewhere)


@pytest.mark.chain
def test_sends_are_never_retried_by_web3_itself(deployed):
    """web3 7's HTTPProvider retries eth_sendRawTransaction on connection errors by default."""
    from chain.transactions import connect

    assert connect(deployed.rpc_url).provider.exception_retry_configuration is None


@pytest.mark.chain
def test_a_chain_that_is_down_gives_a_clear_error_after_retrying(deployed):
    url = unserved_rpc_url()
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as down:
        ChainClient(url, deployed.deployment)
    message = str(down.value)
    assert url in message and "does not answer" in message and "after 4 attempts" in message
    assert "`dolphin chain deploy` starts a local one" in message
    assert time.monotonic() - started >= 0.25 + 0.5 + 1.0  # it backed off between attempts


# ---------------------------------------------------------------------------------------------- unit


@pytest.mark.unit
def test_reads_are_retried_while_the_connection_fails(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise requests.ConnectionError("refused")
        return 42

    assert read(flaky, "reading") == 42
    assert len(attempts) == 3


@pytest.mark.unit
def test_other_read_errors_are_not_retried():
    attempts = []

    def broken():
        attempts.append(1)
        raise ValueError("a bug, not the network")

    with pytest.raises(ValueError):
        read(broken, "reading")
    assert len(attempts) == 1


@pytest.mark.unit
def test_a_transaction_is_never_resent_when_the_connection_drops():
    sent = []

    def send_raw_transaction(raw):
        sent.append(raw)
        raise requests.ConnectionError("connection reset")

    w3 = SimpleNamespace(eth=SimpleNamespace(send_raw_transaction=send_raw_transaction))
    signed = SimpleNamespace(hash=b"\x12" * 32, raw_transaction=b"raw")
    with pytest.raises(ChainUnavailable) as failed:
        send_signed(w3, signed, "staking")
    assert sent == [b"raw"]
    assert "0x" + "12" * 32 in str(failed.value) and "it was not resent" in str(failed.value)


@pytest.mark.unit
def test_a_transaction_that_is_not_mined_in_time_is_reported_with_its_hash_and_not_resent():
    from web3.exceptions import TimeExhausted

    sent = []

    def wait_for_transaction_receipt(tx_hash, timeout, poll_latency):
        raise TimeExhausted("not mined")

    w3 = SimpleNamespace(
        eth=SimpleNamespace(
            send_raw_transaction=sent.append, wait_for_transaction_receipt=wait_for_transaction_receipt
        )
    )
    with pytest.raises(TransactionFailed) as failed:
        send_signed(w3, SimpleNamespace(hash=b"\x34" * 32, raw_transaction=b"raw"), "bonding")
    assert sent == [b"raw"]
    assert "0x" + "34" * 32 in str(failed.value) and "it may still be mined" in str(failed.value)


@pytest.mark.chain
def test_a_transaction_the_node_refuses_is_a_chain_error_with_the_node_s_reason(deployed):
    from eth_account import Account

    from chain.transactions import send_value

    penniless = Account.create()
    with pytest.raises(
        TransactionFailed, match="the node refused transaction 0x[0-9a-f]{64}: Insufficient funds"
    ):
        send_value(deployed.w3, penniless, deployed.deployment.deployer, 10**18, "sending ETH")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "decimals", "value"),
    [("1", 18, 10**18), ("0.25", 18, 25 * 10**16), ("100_000", 18, 10**23), ("1.000001", 6, 1_000_001)],
)
def test_amounts_parse_exactly(text, decimals, value):
    assert parse_units(text, decimals) == value


@pytest.mark.unit
@pytest.mark.parametrize("text", ["0", "-1", "1e-19", "abc", "0.0000001", "nan", "inf"])
def test_amounts_that_are_not_positive_or_too_precise_are_refused(text):
    with pytest.raises(ClientError):
        parse_units(text, 6)


@pytest.mark.unit
def test_amounts_format_without_trailing_zeros():
    assert format_units(1_234_500_000_000_000_000_000, 18) == "1,234.5"
    assert format_units(7, 6) == "0.000007"
    assert format_units(0, 18) == "0"


@pytest.mark.unit
def test_hints_fill_in_times_and_amounts():
    hint = hint_for("BondingStillThawing", (7, 1_000_000 + 2 * DAY), now=1_000_000)
    assert hint == f"Unbond request 7 thaws until {format_time(1_000_000 + 2 * DAY)} (in 2 d 0 h): run " + (
        "`dolphin chain withdraw` after that."
    )
    assert "worth 100,000 POD; yours is worth 5" in hint_for(
        "ValidatorQuorumBelowMinimumBond", ("0xabc", 5 * POD, 100_000 * POD)
    )
    assert hint_for("SomethingUnknown", ()) is None
    assert hint_for("BondingStillThawing", ()) is None  # arguments unlike the table's: no wrong hint


@pytest.mark.unit
def test_a_bad_key_file_is_named_without_its_contents(tmp_path):
    secret = "0x" + "zz" * 32
    path = tmp_path / "key"
    path.write_text(secret)
    path.chmod(0o600)
    with pytest.raises(ClientError) as refused:
        read_key_file(path)
    assert secret not in str(refused.value) and str(path) in str(refused.value)
    path.write_text("ab" * 32 + "\n")
    assert read_key_file(path) == "0x" + "ab" * 32


@pytest.mark.unit
def test_a_key_file_other_users_can_read_is_refused_as_ssh_does(tmp_path):
    """Attack: another user on the machine reads a 0644 key and owns the wallet. Refused, naming the fix."""
    path = tmp_path / "operator.key"
    path.write_text("ab" * 32 + "\n")
    for mode in (0o644, 0o640, 0o604, 0o660, 0o602):
        path.chmod(mode)
        with pytest.raises(ClientError, match=f"permissions {mode:04o} for the key file .* are too open"):
            read_key_file(path)
    path.chmod(0o400)
    assert read_key_file(path) == "0x" + "ab" * 32
