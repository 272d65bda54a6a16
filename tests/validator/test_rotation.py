"""A full rotation of the validator set, on chain: the genesis set hands over, step by bounded step, to an
elected set that shares none of its members, and every root along the way (signed by the set then
current) installs the set the election computed; the new set alone then keeps settling."""

import pytest

from chain.client import ChainClient, ValidatorSet, bond_validators
from chain.merkle import RewardsTree
from chain.rewards import POD
from chain.testing import settle_root
from validator.election import MAX_CHANGE_BPS, Candidate, elect

pytestmark = [pytest.mark.chain, pytest.mark.slow]

GENESIS_KEYS = (1, 2, 3)
NEWCOMER_KEYS = (4, 5, 6, 7, 8, 9, 10)  # the election's minimum: 7 members, 2M POD between them
NEWCOMER_BOND = 300_000 * POD


def test_a_full_rotation_of_the_set_keeps_settling(deployed_chain):
    clients = [
        ChainClient(deployed_chain.rpc_url, deployed_chain.deployment, key) for key in deployed_chain.keys
    ]
    by_address = {client.address: client for client in clients}
    genesis = {clients[i].address for i in GENESIS_KEYS}
    bond_validators([clients[i] for i in GENESIS_KEYS])
    bond_validators([clients[i] for i in NEWCOMER_KEYS], NEWCOMER_BOND)
    candidates = [
        Candidate(clients[i].address, True, True, clients[i].status().active_bond_shares)
        for i in NEWCOMER_KEYS
    ]
    reader = clients[0]
    current = reader.validator_set()
    assert set(current.members) == genesis
    steps = 0
    for epoch in range(1, 30):
        next_set = elect(candidates, current, epoch=epoch)
        signers = [by_address[member] for member in current.members]
        settle_root(signers, epoch, RewardsTree.build({clients[4].address: epoch * POD}), next_set)
        installed = reader.validator_set()
        assert installed == ValidatorSet(next_set.members, next_set.weights, epoch)
        steps, current = steps + 1, installed
        if not genesis & set(current.members):
            break
    assert not genesis & set(current.members), f"genesis members left after {steps} roots: {current}"
    assert steps >= 10_000 // MAX_CHANGE_BPS  # bounded steps: no root swapped the quorum at once
    # The elected set, none of whose members signed the first root, settles the next one alone.
    last = epoch + 1
    newcomers = [by_address[member] for member in current.members]
    settle_root(newcomers, last, RewardsTree.build({clients[4].address: last * POD}))
    assert reader.validator_set().epoch == last
    assert reader.call("RewardsDistributor", "activeRoot")[0] == last
