"""chain.merkle against the deployed RewardsDistributor: every proof of a random tree is accepted by the
contract's OpenZeppelin MerkleProof, forged ones are refused."""

import random

import pytest
from eth_account import Account

from chain.client import ChainClient, ExplainedRevert, bond_validators
from chain.merkle import RewardsTree
from chain.testing import reverted, settle_root
from chain.transactions import send_value

pytestmark = [pytest.mark.integration, pytest.mark.chain]

POD = 10**18
LEAVES = 20


@pytest.fixture(scope="module")
def settled(module_deployed_chain):
    """A 20-leaf tree of random accounts and amounts, settled as epoch 1 by three bonded validators."""
    rng = random.Random(20261122)
    earners = [Account.create(rng.randbytes(32)) for _ in range(LEAVES)]
    tree = RewardsTree.build({earner.address: rng.randrange(1, 10_000 * POD) for earner in earners})
    deployed = module_deployed_chain
    validators = [ChainClient(deployed.rpc_url, deployed.deployment, key) for key in deployed.keys[1:4]]
    bond_validators(validators)
    settle_root(validators, 1, tree)
    yield deployed, validators, tree, {earner.address: earner for earner in earners}


@pytest.fixture(autouse=True)
def _each_test_from_the_settled_root(settled):
    with reverted(settled[0].w3):
        yield


def claim_call(client, account, amount, proof):
    """What RewardsDistributor.claim would pay `account`, simulated (eth_call from it) without changing
    state."""
    proof = [bytes(node) for node in proof]
    return client.call("RewardsDistributor", "claim", amount, proof, sender=account)


def test_the_active_root_is_the_tree_root(settled):
    _, (client, *_), tree, _ = settled
    epoch, root, total = client.call("RewardsDistributor", "activeRoot")
    assert (epoch, bytes(root), total) == (1, tree.root, tree.total)


def test_every_leaf_proof_is_accepted_by_the_contract(settled):
    _, (client, *_), tree, _ = settled
    assert len(tree.amounts) == LEAVES
    for account, amount in tree.amounts.items():
        assert claim_call(client, account, amount, tree.proof(account)) == amount, account


def test_claiming_every_leaf_pays_the_tree_total_and_a_replay_pays_nothing(settled):
    deployed, (client, *_), tree, earners = settled
    paid_before = client.call("RewardsDistributor", "totalClaimed")
    for account, amount in tree.amounts.items():
        # Only the account claims (it chooses liquid or bonded): it needs gas of its own.
        send_value(deployed.w3, client.account, account, 10**16, "funding a claimant")
        claimant = ChainClient(deployed.rpc_url, deployed.deployment, earners[account].key)
        assert claimant.claim(tree).amount == amount
        assert client.call("POD", "balanceOf", account) == amount
    assert client.call("RewardsDistributor", "totalClaimed") - paid_before == tree.total
    account = next(iter(tree.amounts))
    assert claim_call(client, account, tree.amounts[account], tree.proof(account)) == 0


@pytest.mark.parametrize("forgery", ["amount", "sibling", "other_leaf", "truncated", "foreign_tree"])
def test_a_forged_proof_is_refused(settled, forgery):
    _, (client, *_), tree, _ = settled
    accounts = list(tree.amounts)
    account, other = accounts[3], accounts[4]
    amount, proof = tree.amounts[account], list(tree.proof(account))
    if forgery == "amount":
        amount += 1
    elif forgery == "sibling":
        proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    elif forgery == "other_leaf":
        proof = list(tree.proof(other))
    elif forgery == "truncated":
        proof = proof[:-1]
    else:  # a valid proof, but of another tree that gives the account more
        proof = list(RewardsTree.build(tree.amounts | {account: amount * 2}).proof(account))
        amount *= 2
    with pytest.raises(ExplainedRevert) as refused:
        claim_call(client, account, amount, proof)
    assert refused.value.error == "RewardsDistributorInvalidProof"
    assert refused.value.error_args == (account.lower(), amount)
    assert "does not match the active rewards root" in refused.value.hint


def test_a_root_signed_by_too_few_validators_is_refused_with_the_quorum_s_error(settled):
    _, validators, tree, _ = settled
    relay = validators[0]
    deadline = relay.chain_time() + 3600
    lone = validators[0].sign_epoch_root(2, tree, deadline)  # a third of the weight, two thirds needed
    with pytest.raises(ExplainedRevert) as refused:
        relay.propose_root(2, tree, deadline, [lone])
    assert refused.value.error == "ValidatorQuorumNotReached"  # raised inside the quorum contract
    signed, required = refused.value.error_args
    assert signed < required
    assert f"The signers hold {signed} of the {required} validator weight needed" in refused.value.hint
