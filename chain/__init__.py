"""The off-chain half of the contracts: the local dev chain, deployment, contract client, Merkle trees and
the reward engine.
"""
