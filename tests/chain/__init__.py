"""Tests of the chain package: Merkle trees and the reward engine (no chain, no network)."""
