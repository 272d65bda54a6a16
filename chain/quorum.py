"""What a quorum of validators signs for the chain: an epoch's rewards root with the next validator set
(`RewardsDistributor.proposeRoot`) and a batch of credit debits (`Credits.settleDebits`).

There is one way to sign each: the validator daemon (which gossips the signature) and `ChainClient` (the
`dolphin chain root sign` command, relays, tests) both call `epoch_root_signature` / `debit_batch_signature`.
Each builds the message record of protocols.messages (`SettlementSignature`, `CreditDebitSignature`), which
checks its fields before they are signed, and the record's `typed_values` is the only place the EIP-712
struct values are made: so the digest a relay orders signatures by (`epoch_root_digest`,
`debit_batch_digest`) is the one a gossiped signature is filed under and the one the contract recomputes.

`QuorumRule` is ValidatorQuorum's own count, the one place it is made off chain: when the validator daemon
relays a root or a debit batch and submits a slashing decision, and in what order the signatures go
(`quorum_order`, the order `checkQuorum` requires).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocols.eth import EthAccount, TypedDomain
from protocols.messages import CreditDebitSignature, SettlementSignature, eth_digest, eth_sign

if TYPE_CHECKING:
    from chain.client import ValidatorSet
    from chain.merkle import RewardsTree

__all__ = [
    "QuorumRule",
    "debit_batch_digest",
    "debit_batch_signature",
    "epoch_root_digest",
    "epoch_root_signature",
    "quorum_order",
]


def _epoch_root_fields(
    epoch: int, tree: RewardsTree, deadline: int, next_set: ValidatorSet
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "rewards_root": tree.root,
        "total_rewards": tree.total,
        "next_validators": tuple(bytes.fromhex(member[2:]) for member in next_set.members),
        "next_weights": tuple(next_set.weights),
        "deadline": deadline,
    }


def epoch_root_signature(
    wallet: EthAccount,
    domain: TypedDomain,
    epoch: int,
    tree: RewardsTree,
    deadline: int,
    next_set: ValidatorSet,
) -> SettlementSignature:
    """`wallet`'s signature of EpochRoot(epoch, tree's root and total, next set, deadline) in `domain` (the
    RewardsDistributor's). `next_set` is the set the root installs for the following epochs."""
    fields = _epoch_root_fields(epoch, tree, deadline, next_set)
    return eth_sign(SettlementSignature, wallet, domain, validator=wallet.address, **fields)


def epoch_root_digest(
    domain: TypedDomain, epoch: int, tree: RewardsTree, deadline: int, next_set: ValidatorSet
) -> bytes:
    """The EIP-712 digest `epoch_root_signature` signs with the same arguments."""
    fields = _epoch_root_fields(epoch, tree, deadline, next_set)
    return eth_digest(SettlementSignature, domain, fields.__getitem__)


def _debit_batch_fields(
    batch_id: int, users: Sequence[bytes], amounts: Sequence[int], deadline: int
) -> dict[str, Any]:
    return {"batch_id": batch_id, "users": tuple(users), "amounts": tuple(amounts), "deadline": deadline}


def debit_batch_signature(
    wallet: EthAccount,
    domain: TypedDomain,
    batch_id: int,
    users: Sequence[bytes],
    amounts: Sequence[int],
    deadline: int,
) -> CreditDebitSignature:
    """`wallet`'s signature of CreditDebitBatch(batchId, users, amounts, deadline) in `domain` (Credits')."""
    fields = _debit_batch_fields(batch_id, users, amounts, deadline)
    return eth_sign(CreditDebitSignature, wallet, domain, validator=wallet.address, **fields)


def debit_batch_digest(
    domain: TypedDomain, batch_id: int, users: Sequence[bytes], amounts: Sequence[int], deadline: int
) -> bytes:
    """The EIP-712 digest `debit_batch_signature` signs with the same arguments."""
    fields = _debit_batch_fields(batch_id, users, amounts, deadline)
    return eth_digest(CreditDebitSignature, domain, fields.__getitem__)


def quorum_order(signatures: Mapping[bytes, bytes]) -> list[bytes]:
    """Signatures by their signer's 20-byte address, in the order ValidatorQuorum.checkQuorum reads them:
    ascending signer address (it refuses any other order, so no signer counts twice)."""
    return [signatures[signer] for signer in sorted(signatures)]


@dataclass(frozen=True)
class QuorumRule:
    """The current validator set's weights by 20-byte address and ValidatorQuorum's quorum fraction.

    Signers are a quorum as `checkQuorum` counts them: their weight × denominator ≥ total weight ×
    numerator, a signer outside the set weighing nothing; `checkQuorumExcluding` (slashing decisions) leaves
    the excluded member's weight out of both sides. Without a chain the set is the configured one, of equal
    weights, and the fraction the deployment's default (2/3).
    """

    weights: Mapping[bytes, int]
    numerator: int = 2
    denominator: int = 3

    @classmethod
    def equal_weights(cls, members: Iterable[bytes]) -> QuorumRule:
        """The set of `members`, one weight each (a set without a chain, named in the config)."""
        return cls(dict.fromkeys(members, 1))

    def is_validator(self, address: bytes) -> bool:
        return self.weights.get(address, 0) > 0

    def reached(self, signers: Iterable[bytes], *, excluded: bytes | None = None) -> bool:
        """Whether `signers` (distinct addresses) hold a quorum, `excluded`'s weight left out."""
        total = sum(weight for member, weight in self.weights.items() if member != excluded)
        signed = sum(self.weights.get(signer, 0) for signer in set(signers) if signer != excluded)
        return total > 0 and signed * self.denominator >= total * self.numerator

    def quorum_signatures(
        self, signatures: Mapping[bytes, bytes], *, excluded: bytes | None = None
    ) -> list[bytes] | None:
        """`signatures` (signer -> signature) in `quorum_order` once their signers hold a quorum (`excluded`'s
        weight left out), else None."""
        return quorum_order(signatures) if self.reached(signatures, excluded=excluded) else None
