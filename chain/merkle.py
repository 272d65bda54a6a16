"""The cumulative-rewards Merkle tree that RewardsDistributor checks with OpenZeppelin's MerkleProof.

Built exactly like OpenZeppelin's StandardMerkleTree (@openzeppelin/merkle-tree, leaf encoding
["address", "uint256"]) so that `MerkleProof.verify(proof, root, leaf)` accepts every proof made here:

- leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))); the double hash keeps
  a 64-byte inner node from ever passing for a leaf (second-preimage attack);
- leaves sorted by hash fill an array-backed complete binary tree from its end: node i has children
  2i+1 and 2i+2 and the root is node 0;
- an inner node is keccak256 of its children in ascending byte order (Hashes.commutativeKeccak256), so a
  proof is just the siblings from the leaf up, with no left/right flags.

Amounts are cumulative (what an account may have claimed in total so far), so a new epoch's tree replaces
the old one and a claimant needs only the latest proof.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from chain.address import checked_address
from chain.errors import MerkleError

LEAF_ENCODING = ("address", "uint256")
FORMAT = "dolphin-rewards-merkle-v1"
UINT256_MAX = 2**256 - 1

_INTEGER_TEXT = re.compile(r"0|[1-9][0-9]{0,77}")


def leaf_hash(account: str, cumulative_amount: int) -> bytes:
    """The leaf RewardsDistributor rebuilds from (account, cumulativeAmount); AddressError for a bad
    address, MerkleError for a bad amount."""
    address = checked_address(account)
    if type(cumulative_amount) is not int or not 0 <= cumulative_amount <= UINT256_MAX:
        raise MerkleError(
            f"amount of {address} must be an integer in [0, 2**256-1], got {cumulative_amount!r}"
        )
    return _leaf(address, cumulative_amount)


def _leaf(address: str, amount: int) -> bytes:
    """The leaf of a checked address and amount: abi.encode(address, uint256) is the address left-padded
    to 32 bytes, then the amount as 32 big-endian bytes (tests hold this to eth_abi's encoding)."""
    return keccak(keccak(bytes(12) + bytes.fromhex(address[2:]) + amount.to_bytes(32, "big")))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin Hashes.commutativeKeccak256: keccak256 of the two hashes, smaller first."""
    return keccak(a + b if a < b else b + a)


def process_proof(proof: Sequence[bytes], leaf: bytes) -> bytes:
    """The root that `proof` leads to from `leaf` (OpenZeppelin MerkleProof.processProof)."""
    computed = leaf
    for sibling in proof:
        computed = hash_pair(computed, sibling)
    return computed


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """Whether `proof` shows `leaf` is in the tree of `root` (OpenZeppelin MerkleProof.verify)."""
    return process_proof(proof, leaf) == root


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claimant submits: its cumulative amount, its leaf and the proof of that leaf."""

    account: str
    amount: int
    leaf: bytes
    proof: tuple[bytes, ...]

    def verify(self, root: bytes) -> bool:
        """Whether this claim is in the tree of `root`, its leaf recomputed from account and amount."""
        return verify(self.proof, root, leaf_hash(self.account, self.amount))


@dataclass(frozen=True, slots=True)
class RewardsTree:
    """A built tree: the node array in OpenZeppelin's layout and where each account's leaf sits."""

    nodes: tuple[bytes, ...]
    """Node 0 is the root; the leaves are the last len(amounts) nodes, in ascending hash order."""
    amounts: Mapping[str, int]
    """Cumulative amount per checksummed address."""
    positions: Mapping[str, int]
    """Node index of each account's leaf."""

    @classmethod
    def build(cls, amounts: Mapping[str, int]) -> RewardsTree:
        """The tree of `amounts` (address -> cumulative wei). The result does not depend on their order.

        Raises MerkleError for an empty mapping, a bad amount, or one address given twice (in different
        letter cases), and AddressError (chain.address) for a bad address.
        """
        if not amounts:
            raise MerkleError("a rewards tree needs at least one account")
        checked: dict[str, int] = {}
        hashed: list[tuple[bytes, str]] = []
        for account, amount in amounts.items():
            address = checked_address(account)
            if address in checked:
                raise MerkleError(f"account {address} appears twice")
            if type(amount) is not int or not 0 <= amount <= UINT256_MAX:
                raise MerkleError(f"amount of {address} must be an integer in [0, 2**256-1], got {amount!r}")
            checked[address] = amount
            hashed.append((_leaf(address, amount), address))
        hashed.sort()
        count = len(hashed)
        nodes: list[bytes] = [b""] * (2 * count - 1)
        positions: dict[str, int] = {}
        for rank, (leaf, address) in enumerate(hashed):
            positions[address] = len(nodes) - 1 - rank
            nodes[len(nodes) - 1 - rank] = leaf
        for index in range(len(nodes) - 1 - count, -1, -1):
            nodes[index] = hash_pair(nodes[2 * index + 1], nodes[2 * index + 2])
        ordered = sorted(checked)
        return cls(tuple(nodes), {a: checked[a] for a in ordered}, {a: positions[a] for a in ordered})

    @property
    def root(self) -> bytes:
        return self.nodes[0]

    @property
    def total(self) -> int:
        """Sum of the cumulative amounts: the `total` of the EpochRoot that settlers sign for this root."""
        return sum(self.amounts.values())

    def proof(self, account: str) -> tuple[bytes, ...]:
        """The sibling hashes from `account`'s leaf up to the root; raises MerkleError if it is absent."""
        address = checked_address(account)
        if address not in self.positions:
            raise MerkleError(f"account {address} is not in this tree")
        index = self.positions[address]
        siblings = []
        while index > 0:
            siblings.append(self.nodes[index + 1 if index % 2 else index - 1])
            index = (index - 1) // 2
        return tuple(siblings)

    def claim(self, account: str) -> Claim:
        address = checked_address(account)
        proof = self.proof(address)
        return Claim(address, self.amounts[address], self.nodes[self.positions[address]], proof)

    def to_document(self) -> dict[str, Any]:
        """The tree for claimants: root, total, and per account its amount, leaf and proof."""
        return {
            "format": FORMAT,
            "leafEncoding": list(LEAF_ENCODING),
            "root": _hex(self.root),
            "total": str(self.total),
            "claims": {
                address: {
                    "amount": str(claim.amount),
                    "leaf": _hex(claim.leaf),
                    "proof": [_hex(node) for node in claim.proof],
                }
                for address in self.amounts
                for claim in (self.claim(address),)
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_document(), indent=1) + "\n"

    def to_standard_dump(self) -> dict[str, Any]:
        """The tree in @openzeppelin/merkle-tree's "standard-v1" dump, for `StandardMerkleTree.load`."""
        return {
            "format": "standard-v1",
            "leafEncoding": list(LEAF_ENCODING),
            "tree": [_hex(node) for node in self.nodes],
            "values": [
                {"value": [address, str(amount)], "treeIndex": self.positions[address]}
                for address, amount in self.amounts.items()
            ],
        }

    @classmethod
    def from_json(cls, text: str | bytes) -> RewardsTree:
        """Read a document written by to_json, rebuilding the tree and checking that every root, leaf and
        proof in it is the one the amounts give. Raises MerkleError on any difference, AddressError for a
        bad address."""
        try:
            document = json.loads(text)
        except ValueError as error:
            raise MerkleError(f"not a JSON document: {error}") from error
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise MerkleError(f"not a rewards tree document: 'format' must be {FORMAT!r}")
        if document.get("leafEncoding") != list(LEAF_ENCODING):
            raise MerkleError(f"'leafEncoding' must be {list(LEAF_ENCODING)}")
        claims = document.get("claims")
        if not isinstance(claims, dict):
            raise MerkleError("'claims' must be an object keyed by address")
        amounts = {}
        for address, claim in claims.items():
            if not isinstance(claim, dict) or not isinstance(claim.get("amount"), str):
                raise MerkleError(f"claim of {address!r} must be an object with a decimal string 'amount'")
            if _INTEGER_TEXT.fullmatch(claim["amount"]) is None:
                raise MerkleError(
                    f"claim of {address!r}: amount must be a decimal string, got {claim['amount']!r}"
                )
            amounts[address] = int(claim["amount"])
        tree = cls.build(amounts)
        if document.get("root") != _hex(tree.root) or document.get("total") != str(tree.total):
            raise MerkleError(f"root or total does not match the amounts (rebuilt root {_hex(tree.root)})")
        expected = tree.to_document()["claims"]
        for address, claim in claims.items():
            if claim != expected[checked_address(address)]:
                raise MerkleError(f"claim of {address} does not match the tree rebuilt from its amounts")
        return tree


def _hex(node: bytes) -> str:
    return "0x" + node.hex()
