"""POD: supply, transfers, burn, permit (EIP-2612) and vote checkpoints (ERC-5805) on a real Anvil chain."""

import brownie
from brownie import chain
from eth_account import Account
from eth_account.messages import encode_typed_data

from tests.contracts.conftest import POD_UNIT, REWARDS_SUPPLY, TREASURY_SUPPLY
from tests.eip712 import typed_data


def test_initial_supply_goes_to_treasury_and_rewards_pool(pod, treasury, rewards_pool):
    assert pod.totalSupply() == TREASURY_SUPPLY + REWARDS_SUPPLY
    assert pod.balanceOf(treasury) == TREASURY_SUPPLY
    assert pod.balanceOf(rewards_pool) == REWARDS_SUPPLY
    assert (pod.name(), pod.symbol(), pod.decimals()) == ("Dolphin POD", "POD", 18)


def test_zero_recipient_is_refused(POD, deployer, treasury):
    with brownie.reverts("PODInvalidRecipient: "):
        POD.deploy(treasury, 1, brownie.ZERO_ADDRESS, 1, {"from": deployer})


def test_transfer_beyond_balance_reverts_with_custom_error(pod, treasury, accounts):
    with brownie.reverts(revert_pattern=r"ERC20InsufficientBalance: .*"):
        pod.transfer(accounts[3], TREASURY_SUPPLY + 1, {"from": treasury})
    assert pod.balanceOf(accounts[3]) == 0


def test_burn_reduces_supply(pod, treasury):
    pod.burn(5 * POD_UNIT, {"from": treasury})
    assert pod.totalSupply() == TREASURY_SUPPLY + REWARDS_SUPPLY - 5 * POD_UNIT


def _permit_signature(pod, owner_key, owner, spender, value, deadline):
    """An EIP-2612 permit signed by `owner_key` (v, r, s are what permit() takes)."""
    permit_fields = [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
    message = {
        "owner": owner,
        "spender": spender,
        "value": value,
        "nonce": pod.nonces(owner),
        "deadline": deadline,
    }
    document = typed_data(
        "Permit",
        permit_fields,
        message,
        chain_id=chain.id,
        verifying_contract=pod.address,
        name="Dolphin POD",
    )
    return Account.sign_message(encode_typed_data(full_message=document), owner_key)


def test_permit_approves_by_signature_and_expires_after_time_travel(pod, treasury, accounts):
    holder = Account.create()
    pod.transfer(holder.address, 10 * POD_UNIT, {"from": treasury})
    spender = accounts[4]
    deadline = chain[-1].timestamp + 3600

    signed = _permit_signature(pod, holder.key, holder.address, spender.address, 7 * POD_UNIT, deadline)
    pod.permit(
        holder.address, spender, 7 * POD_UNIT, deadline, signed.v, signed.r, signed.s, {"from": spender}
    )
    assert pod.allowance(holder.address, spender) == 7 * POD_UNIT

    # A fresh permit signed with the same deadline is refused once the chain's clock passes it.
    signed = _permit_signature(pod, holder.key, holder.address, spender.address, 9 * POD_UNIT, deadline)
    chain.sleep(2 * 3600)
    chain.mine()
    with brownie.reverts(revert_pattern=r"ERC2612ExpiredSignature: .*"):
        pod.permit(
            holder.address, spender, 9 * POD_UNIT, deadline, signed.v, signed.r, signed.s, {"from": spender}
        )
    assert pod.allowance(holder.address, spender) == 7 * POD_UNIT


def test_votes_are_checkpointed_by_timestamp(pod, treasury, accounts):
    voter = accounts[5]
    pod.transfer(voter, 1_000 * POD_UNIT, {"from": treasury})
    pod.delegate(voter, {"from": voter})
    delegated_at = chain[-1].timestamp
    chain.sleep(100)
    chain.mine()
    pod.transfer(treasury, 400 * POD_UNIT, {"from": voter})
    chain.sleep(100)
    chain.mine()

    assert pod.CLOCK_MODE() == "mode=timestamp"
    assert pod.getPastVotes(voter, delegated_at) == 1_000 * POD_UNIT
    assert pod.getVotes(voter) == 600 * POD_UNIT
