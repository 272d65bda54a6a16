"""The off-chain half of the contracts: the local dev chain, deployment, contract client, Merkle trees and
the reward engine.

- errors:       ChainError, the one error base of this package, and its subclasses
- address:      checked_address, the one check of an address someone wrote (EIP-55 when mixed case)
- rewards:      the reward boost engine of docs/rewards.md (params, engine, exchange format, simulation)
- merkle:       the cumulative-rewards Merkle tree the RewardsDistributor verifies (OpenZeppelin-compatible)
- devchain:     a local Anvil chain on a free loopback port, and its clock (time travel, mining)
- artifacts:    compiled contract artifacts (Brownie's build, Uniswap's npm packages)
- transactions: connecting to a node, retried reads, transactions sent once, reverts decoded
- deploy:       deploying and wiring the whole system; the deployment file every command reads
- locate:       finding the chain and its deployment (RPC URL, else ready.json), as every command does
- areas:        each contract's typed reads (`client.bonding.slashable_of(…)`): what the floors above call
- client:       ChainClient, what operators, validators and users do on chain, with hints on reverts;
                ValidatorSet, the elected set as ValidatorQuorum holds it and epoch roots sign it
- quorum:       what a validator quorum signs (epoch roots, debit batches) and ValidatorQuorum's rule
- snapshot:     an epoch's on-chain inputs (bonds, nodes, slashes, parameters) for the reward engine
- testing:      test doubles: a deployed dev chain, snapshots, roots settled at once, an unserved RPC URL
"""

from chain.client import ChainClient, ClientError, ExplainedRevert, ValidatorSet
from chain.deploy import Deployment, DeploymentError, DeploymentExists, deploy_system, load_deployment
from chain.errors import AddressError, ChainError, MerkleError, RewardsInputError, RewardsParamsError
from chain.snapshot import SnapshotError, epoch_inputs, read_snapshot
from chain.transactions import ChainUnavailable, TransactionFailed

__all__ = [
    "AddressError",
    "ChainClient",
    "ChainError",
    "ChainUnavailable",
    "ClientError",
    "Deployment",
    "DeploymentError",
    "DeploymentExists",
    "ExplainedRevert",
    "MerkleError",
    "RewardsInputError",
    "RewardsParamsError",
    "SnapshotError",
    "TransactionFailed",
    "ValidatorSet",
    "deploy_system",
    "epoch_inputs",
    "load_deployment",
    "read_snapshot",
]
