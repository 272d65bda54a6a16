"""chain.snapshot: an epoch's on-chain inputs read at one block and fed into chain.rewards.close_epoch."""

import pytest

from chain.client import ChainClient, bond_validators
from chain.devchain import mine
from chain.errors import ChainError
from chain.rewards import RewardParams, close_epoch, decode_document, encode_document, encode_result
from chain.snapshot import (
    SnapshotError,
    call_many,
    epoch_inputs,
    params_from_registry,
    previous_from_output,
    read_params,
    read_snapshot,
)
from validator.strikes import DecisionFields

POD = 10**18
WAD = 10**18


def slash(validators, offender: str, slash_bps: int) -> None:
    """Execute a StrikeDecision signed by every validator (EIP-712, quorum order)."""
    from chain.quorum import quorum_order
    from protocols.eth import EthAccount
    from protocols.messages import StrikeDecisionSignature, eth_sign

    relay = validators[0]
    decision = DecisionFields(
        offender=bytes.fromhex(offender[2:]),
        evidence_hash=b"\x42" * 32,
        slash_bps=slash_bps,
        reporter=b"\x00" * 20,
        deadline=relay.chain_time() + 3600,
    )
    domain = relay.domain("Slashing")
    signatures = {}
    for validator in validators:
        signer = EthAccount(bytes(validator.account.key))
        signed = eth_sign(
            StrikeDecisionSignature, signer, domain, validator=signer.address, **decision.signature_fields()
        )
        signatures[signer.address] = signed.signature
    relay.transact("Slashing", "slash", decision.as_tuple(), quorum_order(signatures))


@pytest.fixture(scope="module")
def epoch(module_deployed_chain):
    """Three validators; operator A bonded and registered, B registered then slashed, C registered then
    unregistered. Returns the chain, a reader, the accounts and the epoch's closing block."""
    deployed = module_deployed_chain
    clients = [ChainClient(deployed.rpc_url, deployed.deployment, key) for key in deployed.keys]
    validators, (a, b, c) = clients[1:4], clients[4:7]
    bond_validators(validators)
    for operator, amount, peer in ((a, 20_000, 1), (b, 5_000, 2), (c, 3_000, 3)):
        operator.stake(amount * POD)
        operator.bond()
        operator.register_node(bytes([peer]) * 32)
    c.unregister_node(bytes([3]) * 32)
    start = deployed.w3.eth.block_number + 1
    slash(validators, b.address, 1000)
    closing = deployed.w3.eth.block_number
    mine(deployed.w3)
    # After the closing block: must not show in the snapshot.
    a.stake(1_000 * POD)
    a.bond()
    yield deployed, clients[0], validators, (a, b, c), start, closing


@pytest.mark.chain
def test_the_snapshot_reads_bonds_nodes_and_slashes_as_of_the_closing_block(epoch):
    _, reader, validators, (a, b, c), start, closing = epoch
    snapshot = read_snapshot(reader, closing, epoch_start_block=start)
    assert snapshot.block == closing
    for client in (*validators, a, b, c):
        shares = reader.call("Bonding", "activeBondOf", client.address, block=closing)
        assert snapshot.active_bonds[client.address] == reader.call(
            "StakedPOD", "convertToAssets", shares, block=closing
        )
    assert 19_999 * POD < snapshot.active_bonds[a.address] <= 20_000 * POD  # not the later 21,000
    assert snapshot.active_bonds[b.address] <= 4_500 * POD  # 10% slashed
    assert snapshot.registered == {a.address, b.address}
    assert snapshot.slashed == {b.address}
    assert snapshot.params == RewardParams()  # the registry's defaults are the spec's table


@pytest.mark.chain
def test_slashes_before_the_epoch_do_not_suspend(epoch):
    _, reader, _, (_, b, _), start, closing = epoch
    assert b.address not in read_snapshot(reader, start - 1, epoch_start_block=start - 1).slashed
    assert read_snapshot(reader, closing, epoch_start_block=closing + 1).slashed == frozenset()


@pytest.mark.chain
def test_the_snapshot_feeds_close_epoch_and_the_next_epoch_carries_its_state(epoch):
    _, reader, validators, (a, b, c), start, closing = epoch
    newcomer = "0x" + "77" * 20
    base_rewards = {a.address: 10 * POD, b.address: 5 * POD, newcomer: POD}
    snapshot = read_snapshot(reader, closing, accounts=base_rewards, epoch_start_block=start)
    inputs = epoch_inputs(snapshot, base_rewards, banned=[c.address])
    expected = {v.address for v in validators} | {
        a.address,
        b.address,
        c.address,
        reader.w3.to_checksum_address(newcomer),
    }
    assert set(inputs) == expected
    assert inputs[a.address].input.registered and not inputs[a.address].input.suspended
    assert inputs[b.address].input.suspended  # slashed in the epoch
    assert inputs[c.address].input.suspended and not inputs[c.address].input.registered  # banned off chain
    assert inputs[reader.w3.to_checksum_address(newcomer)].input.active_bond == 0

    # The exchange document round-trips, and the engine closes it: new accounts are paid their base.
    document = encode_document(snapshot.params, inputs)
    params, decoded = decode_document(document)
    assert params == snapshot.params and decoded == inputs
    closed = close_epoch(decoded, params)
    assert closed.accounts[a.address].reward == 10 * POD
    assert closed.accounts[a.address].state.closed_epochs == 1

    carried = previous_from_output(encode_result(closed))
    following = epoch_inputs(snapshot, {a.address: 3 * POD}, previous=carried)
    assert following[a.address].state == closed.accounts[a.address].state
    assert following[a.address].snapshot == closed.accounts[a.address].snapshot
    assert close_epoch(following, params).accounts[a.address].state.closed_epochs == 2


@pytest.mark.chain
def test_an_account_costs_no_round_trip_of_its_own(epoch, monkeypatch):
    """The snapshot read two calls per account, each three HTTP round trips (web3 checks the chain id
    twice before an eth_call): 8.5 s of a 1M-receipt close with 1,000 operators (tests/bench settlement).
    call_many sends them in JSON-RPC batches and reads what single calls read."""
    _, reader, validators, (a, b, c), _, closing = epoch
    accounts = [client.address for client in (*validators, a, b, c)] * 40  # 240 calls: three batches
    timepoint = reader.w3.eth.get_block(closing)["timestamp"]
    batches, calls = [], []
    batch_request, call = reader.w3.provider.make_batch_request, reader.call
    monkeypatch.setattr(
        reader.w3.provider,
        "make_batch_request",
        lambda requests: batches.append(len(requests)) or batch_request(requests),
    )
    monkeypatch.setattr(
        reader, "call", lambda *args, **kwargs: calls.append(args[1]) or call(*args, **kwargs)
    )
    shares = call_many(reader, "Bonding", "activeBondAt", [(account, timepoint) for account in accounts])
    assert batches == [100, 100, 40] and calls == []
    assert shares == [call("Bonding", "activeBondAt", account, timepoint) for account in accounts]
    assets = call_many(reader, "StakedPOD", "convertToAssets", [(s,) for s in shares[:7]], closing)
    assert assets == [call("StakedPOD", "convertToAssets", s, block=closing) for s in shares[:7]]
    assert call_many(reader, "Credits", "isSettled", [(1,), (2,)], closing) == [False, False]
    with pytest.raises(ChainError, match="activeBondAt"):
        call_many(reader, "Bonding", "activeBondAt", [(a.address, 2**40)])  # a lookup in the future reverts
    batches.clear()
    snapshot = read_snapshot(reader, closing)
    assert [name for name in calls if name != "getAll"] == [] and len(batches) == 2  # shares, then assets
    assert snapshot.active_bonds[a.address] == call(
        "StakedPOD",
        "convertToAssets",
        call("Bonding", "activeBondOf", a.address, block=closing),
        block=closing,
    )


@pytest.mark.chain
def test_the_registry_parameters_are_read_at_the_block(epoch):
    _, reader, _, _, _, closing = epoch
    assert read_params(reader, closing) == RewardParams()


@pytest.mark.chain
def test_a_block_that_is_not_in_the_past_is_refused(epoch):
    _, reader, *_ = epoch
    latest = reader.w3.eth.block_number
    with pytest.raises(SnapshotError, match="not in the past"):
        read_snapshot(reader, latest)


@pytest.mark.unit
def test_wad_parameters_become_the_engine_s_exact_strings():
    names = ["alpha", "tiers_kappa", "min_lifetime", "full_weeks"]
    params = params_from_registry(names, [5 * WAD // 10, 3 * WAD // 2, 7 * POD, 20])
    assert params.alpha == "0.5" and params.tiers_kappa == "3/2"
    assert params.min_lifetime == 7 * POD and params.full_weeks == 20
    assert params_from_registry(["alpha", "tiers_kappa"], [WAD, 2 * WAD]).overrides() == {
        "alpha": "1",
        "tiers_kappa": "2",
    }


@pytest.mark.unit
def test_a_document_that_is_no_close_epoch_output_is_refused():
    with pytest.raises(SnapshotError, match="not a close-epoch output document"):
        previous_from_output('{"accounts": {"0x1": {"state": {}}}}')
