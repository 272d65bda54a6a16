"""The off-chain half of the contracts: the local dev chain, deployment, contract client, Merkle trees and
the reward engine.

- errors:  ChainError, the one error base of this package, and its subclasses
- rewards: the reward boost engine of spec/rewards.md (params, engine, exchange format, simulation)
- merkle:  the cumulative-rewards Merkle tree the RewardsDistributor verifies (OpenZeppelin-compatible)
"""

from chain.errors import ChainError, MerkleError, RewardsInputError, RewardsParamsError

__all__ = ["ChainError", "MerkleError", "RewardsInputError", "RewardsParamsError"]
