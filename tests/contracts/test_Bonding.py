"""Bonding: bonds and checkpoints, thawing requests, signed node bindings, the bound slasher, slashes."""

import brownie
from brownie import chain
from eth_utils import keccak

from protocols import eth
from protocols.messages import OperatorBinding, eth_sign
from tests.contracts.conftest import (
    NODE_BINDING_FIELDS,
    POD_UNIT,
    bond_pod,
    sign_typed,
    stake_pod,
)

DAY = 86400
THAW = 90 * DAY
PEER_ID_HASH = keccak(b"\x00\x24\x08\x01\x12\x20" + bytes(range(32)))  # a peer id's multihash bytes, hashed


def sleep_to(timestamp):
    chain.sleep(max(0, timestamp - chain[-1].timestamp))
    chain.mine()


def binding_signature(bonding, wallet, peer_id_hash, nonce):
    message = {"operator": wallet.address, "peerIdHash": peer_id_hash, "nonce": nonce}
    return sign_typed(wallet.private_key, bonding.address, "NodeBinding", NODE_BINDING_FIELDS, message)


# ---------------------------------------------------------------- bond


def test_bond_pulls_shares_and_checkpoints(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    shares = stake_pod(pod, stkpod, treasury, alice, 1_000 * POD_UNIT)
    stkpod.approve(bonding, shares, {"from": alice})
    tx = bonding.bond(shares, {"from": alice})
    assert tx.events["Bonded"]["account"] == alice and tx.events["Bonded"]["shares"] == shares
    assert bonding.activeBondOf(alice) == shares
    assert bonding.slashableOf(alice) == shares
    assert stkpod.balanceOf(bonding) == shares
    assert bonding.bondValueInPOD(alice) == 1_000 * POD_UNIT


def test_bond_for_credits_another_account(pod, stkpod, bonding, treasury, accounts):
    payer, operator = accounts[3], accounts[4]
    shares = stake_pod(pod, stkpod, treasury, payer, 10 * POD_UNIT)
    stkpod.approve(bonding, shares, {"from": payer})
    tx = bonding.bondFor(operator, shares, {"from": payer})
    assert tx.events["Bonded"]["from"] == payer
    assert bonding.activeBondOf(operator) == shares and bonding.activeBondOf(payer) == 0


def test_bond_reverts_on_zero_zero_account_and_missing_allowance(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    shares = stake_pod(pod, stkpod, treasury, alice, 10 * POD_UNIT)
    with brownie.reverts("BondingZeroShares: "):
        bonding.bond(0, {"from": alice})
    with brownie.reverts("BondingInvalidAccount: "):
        bonding.bondFor(brownie.ZERO_ADDRESS, shares, {"from": alice})
    with brownie.reverts(revert_pattern=r"ERC20InsufficientAllowance: .*"):
        bonding.bond(shares, {"from": alice})


def test_active_bond_at_reads_past_timestamps(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    first = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    t1 = chain[-1].timestamp
    sleep_to(t1 + 100)
    second = bond_pod(pod, stkpod, bonding, treasury, alice, 5 * POD_UNIT)
    t2 = chain[-1].timestamp
    sleep_to(t2 + 100)
    bonding.requestUnbond(first, {"from": alice})
    t3 = chain[-1].timestamp
    sleep_to(t3 + 100)

    assert bonding.activeBondAt(alice, t1 - 1) == 0
    assert bonding.activeBondAt(alice, t1) == first
    assert bonding.activeBondAt(alice, t2 + 50) == first + second
    assert bonding.activeBondAt(alice, t3) == second
    assert bonding.clock() == chain[-1].timestamp and bonding.CLOCK_MODE() == "mode=timestamp"


def test_active_bond_at_refuses_the_present_and_future(bonding, accounts):
    with brownie.reverts(revert_pattern=r"BondingFutureLookup: .*"):
        bonding.activeBondAt(accounts[3], chain[-1].timestamp + 10)


# ---------------------------------------------------------------- unbond


def test_request_unbond_moves_active_to_thawing(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    tx = bonding.requestUnbond(shares // 4, {"from": alice})
    request_id = tx.return_value
    assert tx.events["UnbondRequested"]["unlockTime"] == tx.timestamp + THAW
    assert bonding.activeBondOf(alice) == shares - shares // 4
    assert bonding.thawingOf(alice) == shares // 4
    assert bonding.slashableOf(alice) == shares
    account, unlock, request_shares = bonding.unbondRequest(request_id)
    assert (account, unlock, request_shares) == (alice, tx.timestamp + THAW, shares // 4)


def test_request_unbond_reverts_on_zero_and_beyond_active(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    with brownie.reverts("BondingZeroShares: "):
        bonding.requestUnbond(0, {"from": alice})
    with brownie.reverts(revert_pattern=r"BondingInsufficientActiveBond: .*"):
        bonding.requestUnbond(shares + 1, {"from": alice})


def test_withdraw_unbonded_after_the_thaw(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    tx = bonding.requestUnbond(shares, {"from": alice})
    sleep_to(tx.timestamp + THAW)
    withdrawn = bonding.withdrawUnbonded(tx.return_value, {"from": alice})
    assert withdrawn.events["UnbondWithdrawn"]["shares"] == shares
    assert stkpod.balanceOf(alice) == shares
    assert bonding.slashableOf(alice) == 0
    with brownie.reverts(revert_pattern=r"BondingUnknownRequest: .*"):
        bonding.withdrawUnbonded(tx.return_value, {"from": alice})


def test_withdraw_unbonded_reverts_early_for_strangers_and_unknown_ids(
    pod, stkpod, bonding, treasury, accounts
):
    alice, mallory = accounts[3], accounts[4]
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    tx = bonding.requestUnbond(shares, {"from": alice})
    sleep_to(tx.timestamp + THAW - 3600)
    with brownie.reverts(revert_pattern=r"BondingStillThawing: .*"):
        bonding.withdrawUnbonded(tx.return_value, {"from": alice})
    sleep_to(tx.timestamp + THAW)
    with brownie.reverts(revert_pattern=r"BondingNotRequestOwner: .*"):
        bonding.withdrawUnbonded(tx.return_value, {"from": mallory})
    with brownie.reverts(revert_pattern=r"BondingUnknownRequest: .*"):
        bonding.withdrawUnbonded(12345, {"from": alice})


def test_splitting_an_unbond_never_shortens_the_wait(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    first = bonding.requestUnbond(shares // 2, {"from": alice})
    sleep_to(first.timestamp + 30 * DAY)
    second = bonding.requestUnbond(shares - shares // 2, {"from": alice})
    sleep_to(first.timestamp + THAW)
    bonding.withdrawUnbonded(first.return_value, {"from": alice})
    # The later part runs its own full thaw from when it was requested.
    with brownie.reverts(revert_pattern=r"BondingStillThawing: .*"):
        bonding.withdrawUnbonded(second.return_value, {"from": alice})
    sleep_to(second.timestamp + THAW)
    bonding.withdrawUnbonded(second.return_value, {"from": alice})
    assert stkpod.balanceOf(alice) == shares


def test_thaw_period_change_applies_to_new_requests_only(pod, stkpod, bonding, treasury, accounts, deployer):
    alice = accounts[3]
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    old = bonding.requestUnbond(shares // 2, {"from": alice})
    bonding.setThawPeriod(180 * DAY, {"from": deployer})
    new = bonding.requestUnbond(shares // 2, {"from": alice})
    assert bonding.unbondRequest(old.return_value)[1] == old.timestamp + THAW
    assert bonding.unbondRequest(new.return_value)[1] == new.timestamp + 180 * DAY


# ---------------------------------------------------------------- nodes


def test_register_node_with_a_relayed_operator_signature(bonding, validator_wallets, accounts):
    operator, relayer = validator_wallets[0], accounts[5]
    signature = binding_signature(bonding, operator, PEER_ID_HASH, 0)
    tx = bonding.registerNode(operator, PEER_ID_HASH, 0, signature, {"from": relayer})
    assert tx.events["NodeRegistered"]["operator"] == operator
    assert bonding.isNodeOf(operator, PEER_ID_HASH)
    assert bonding.nonces(operator) == 1


def test_register_node_replay_is_refused_by_the_nonce(bonding, validator_wallets):
    operator = validator_wallets[0]
    signature = binding_signature(bonding, operator, PEER_ID_HASH, 0)
    bonding.registerNode(operator, PEER_ID_HASH, 0, signature, {"from": operator})
    bonding.unregisterNode(PEER_ID_HASH, {"from": operator})
    with brownie.reverts(revert_pattern=r"InvalidAccountNonce: .*"):
        bonding.registerNode(operator, PEER_ID_HASH, 0, signature, {"from": operator})


def test_register_node_refuses_a_foreign_signature_and_zero_peer_id(bonding, validator_wallets):
    operator, impostor = validator_wallets[0], validator_wallets[1]
    forged = binding_signature(bonding, impostor, PEER_ID_HASH, 0)
    with brownie.reverts(revert_pattern=r"BondingInvalidSignature: .*"):
        bonding.registerNode(operator, PEER_ID_HASH, 0, forged, {"from": impostor})
    signature = binding_signature(bonding, operator, b"\x00" * 32, 0)
    with brownie.reverts("BondingInvalidPeerId: "):
        bonding.registerNode(operator, b"\x00" * 32, 0, signature, {"from": operator})


def test_register_node_twice_reverts_and_unregister_needs_a_node(bonding, validator_wallets):
    operator = validator_wallets[0]
    bonding.registerNode(
        operator, PEER_ID_HASH, 0, binding_signature(bonding, operator, PEER_ID_HASH, 0), {"from": operator}
    )
    with brownie.reverts(revert_pattern=r"BondingNodeAlreadyRegistered: .*"):
        bonding.registerNode(
            operator,
            PEER_ID_HASH,
            1,
            binding_signature(bonding, operator, PEER_ID_HASH, 1),
            {"from": operator},
        )
    tx = bonding.unregisterNode(PEER_ID_HASH, {"from": operator})
    assert tx.events["NodeUnregistered"]["peerIdHash"] == "0x" + PEER_ID_HASH.hex()
    assert not bonding.isNodeOf(operator, PEER_ID_HASH)
    with brownie.reverts(revert_pattern=r"BondingNodeNotRegistered: .*"):
        bonding.unregisterNode(PEER_ID_HASH, {"from": operator})


# ---------------------------------------------------------------- governance


def test_thaw_period_is_bounded_and_needs_the_role(bonding, deployer, accounts):
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        bonding.setThawPeriod(60 * DAY, {"from": accounts[6]})
    for bad in (29 * DAY, 366 * DAY):
        with brownie.reverts(revert_pattern=r"BondingParameterOutOfBounds: .*"):
            bonding.setThawPeriod(bad, {"from": deployer})
    assert (
        bonding.setThawPeriod(30 * DAY, {"from": deployer}).events["ThawPeriodSet"]["thawPeriod"] == 30 * DAY
    )
    assert bonding.thawPeriod() == 30 * DAY
    assert bonding.vault() != brownie.ZERO_ADDRESS


def test_governance_cannot_appoint_a_slasher(pod, stkpod, bonding, treasury, accounts, deployer):
    """Medium finding: the timelock administered SLASHER_ROLE (2-day delay against a 90-day exit)."""
    alice, rogue = accounts[3], accounts[8]
    bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    bonding.bindSlasher(accounts[7], {"from": deployer})
    assert bonding.slasher() == accounts[7]
    # The admin (the timelock after deployment) can grant itself any role name; none of them slashes.
    bonding.grantRole(keccak(text="SLASHER_ROLE"), rogue, {"from": deployer})
    with brownie.reverts(revert_pattern=r"BondingUnauthorizedSlasher: .*"):
        bonding.slash(alice, 1, rogue, 0, False, {"from": rogue})
    with brownie.reverts(revert_pattern=r"BondingSlasherNotBindable: .*"):
        bonding.bindSlasher(rogue, {"from": deployer})


def test_only_the_deployer_binds_the_slasher(bonding, accounts):
    with brownie.reverts(revert_pattern=r"BondingSlasherNotBindable: .*"):
        bonding.bindSlasher(accounts[7], {"from": accounts[7]})
    assert bonding.slasher() == brownie.ZERO_ADDRESS


# ---------------------------------------------------------------- slash (called directly by a slasher)


def _slasher(bonding, deployer, account):
    bonding.bindSlasher(account, {"from": deployer})
    return account


def test_slash_needs_the_slasher(pod, stkpod, bonding, treasury, accounts):
    alice = accounts[3]
    bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    with brownie.reverts(revert_pattern=r"BondingUnauthorizedSlasher: .*"):
        bonding.slash(alice, 1, accounts[4], 0, False, {"from": accounts[4]})


def test_slash_takes_active_first_then_thawing_pro_rata(pod, stkpod, bonding, treasury, accounts, deployer):
    alice, reporter = accounts[3], accounts[4]
    slasher = _slasher(bonding, deployer, accounts[7])
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 100 * POD_UNIT)
    first = bonding.requestUnbond(shares // 4, {"from": alice}).return_value
    second = bonding.requestUnbond(shares // 4, {"from": alice}).return_value
    supply_before = pod.totalSupply()

    taken = shares // 2 + shares // 4  # all the active half, then half of the thawing half
    tx = bonding.slash(alice, taken, reporter, 1_000, False, {"from": slasher})
    event = tx.events["Slashed"]
    assert event["shares"] == taken
    assert event["reporterShares"] + event["removedShares"] == taken
    assert event["reporterShares"] == taken // 10
    assert stkpod.balanceOf(reporter) == taken // 10
    assert bonding.activeBondOf(alice) == 0
    assert bonding.thawingOf(alice) == shares // 4
    # Both requests lost the same fraction.
    assert bonding.unbondRequest(first)[2] == bonding.unbondRequest(second)[2] == shares // 8
    # The rest was redeemed and burned as POD.
    assert supply_before - pod.totalSupply() == stkpod.convertToAssets(event["removedShares"])
    assert stkpod.balanceOf(bonding) == shares // 4


def test_slash_beyond_slashable_or_with_bad_bps_reverts(pod, stkpod, bonding, treasury, accounts, deployer):
    alice = accounts[3]
    slasher = _slasher(bonding, deployer, accounts[7])
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    with brownie.reverts(revert_pattern=r"BondingSlashExceedsSlashable: .*"):
        bonding.slash(alice, shares + 1, accounts[4], 0, False, {"from": slasher})
    with brownie.reverts(revert_pattern=r"BondingInvalidReporterBps: .*"):
        bonding.slash(alice, shares, accounts[4], 10_001, False, {"from": slasher})
    with brownie.reverts("BondingZeroShares: "):
        bonding.slash(alice, 0, accounts[4], 0, False, {"from": slasher})


def test_a_bonded_reporter_cut_stays_in_bonding(pod, stkpod, bonding, treasury, accounts, deployer):
    alice, reporter = accounts[3], accounts[4]
    slasher = _slasher(bonding, deployer, accounts[7])
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 100 * POD_UNIT)
    tx = bonding.slash(alice, shares // 2, reporter, 1_000, True, {"from": slasher})
    cut = tx.events["Slashed"]["reporterShares"]
    assert cut == shares // 20 and stkpod.balanceOf(reporter) == 0
    assert bonding.activeBondOf(reporter) == cut
    assert stkpod.balanceOf(bonding) == shares - shares // 2 + cut


def test_emptied_thaw_pool_starts_a_new_generation(pod, stkpod, bonding, treasury, accounts, deployer):
    alice = accounts[3]
    slasher = _slasher(bonding, deployer, accounts[7])
    shares = bond_pod(pod, stkpod, bonding, treasury, alice, 10 * POD_UNIT)
    old = bonding.requestUnbond(shares // 2, {"from": alice})
    bonding.slash(alice, shares, brownie.ZERO_ADDRESS, 0, False, {"from": slasher})
    assert bonding.slashableOf(alice) == 0
    fresh = bond_pod(pod, stkpod, bonding, treasury, alice, 4 * POD_UNIT)
    new = bonding.requestUnbond(fresh, {"from": alice})
    sleep_to(new.timestamp + THAW)
    assert (
        bonding.withdrawUnbonded(old.return_value, {"from": alice}).events["UnbondWithdrawn"]["shares"] == 0
    )
    bonding.withdrawUnbonded(new.return_value, {"from": alice})
    assert stkpod.balanceOf(alice) == fresh  # the wiped request's points did not dilute the new one


def test_node_binding_signed_by_the_protocols_module_registers(bonding, validator_wallets):
    """Cross-part check: protocols.messages (what `ChainClient.register_node` signs with) and Bonding hash
    NodeBinding alike."""
    operator = validator_wallets[1]
    domain = eth.TypedDomain("Dolphin Network", "1", chain.id, bytes.fromhex(bonding.address[2:]))
    binding = eth_sign(
        OperatorBinding,
        eth.EthAccount(bytes.fromhex(operator.private_key[2:])),
        domain,
        operator=bytes.fromhex(operator.address[2:]),
        peer_id_hash=PEER_ID_HASH,
        nonce=0,
    )
    bonding.registerNode(operator, PEER_ID_HASH, 0, binding.signature, {"from": operator})
    assert bonding.isNodeOf(operator, PEER_ID_HASH)


def test_an_unregistered_node_stays_slashable_for_the_unbound_period(bonding, validator_wallets):
    """Attack: an operator unregistered its node after a first public strike, and validators then read
    isNodeOf as false and never signed a decision. The binding now stays slashable for the period."""
    operator = validator_wallets[0]
    assert not bonding.isSlashableNodeOf(operator, PEER_ID_HASH)  # never registered: nothing to slash
    bonding.registerNode(
        operator, PEER_ID_HASH, 0, binding_signature(bonding, operator, PEER_ID_HASH, 0), {"from": operator}
    )
    assert bonding.isSlashableNodeOf(operator, PEER_ID_HASH)
    bonding.unregisterNode(PEER_ID_HASH, {"from": operator})
    unregistered_at = chain[-1].timestamp
    assert not bonding.isNodeOf(operator, PEER_ID_HASH)
    assert bonding.isSlashableNodeOf(operator, PEER_ID_HASH)
    period = bonding.UNBOUND_SLASHABLE_PERIOD()
    assert period == 30 * DAY and period >= bonding.MIN_THAW_PERIOD()
    sleep_to(unregistered_at + period - 60)
    assert bonding.isSlashableNodeOf(operator, PEER_ID_HASH)
    sleep_to(unregistered_at + period + 1)
    assert not bonding.isSlashableNodeOf(operator, PEER_ID_HASH)
