"""Epoch settlement: countersigned receipts become base rewards, the engine boosts them, a Merkle root of
cumulative rewards is what validators sign.

Everything here is reproducible from signed evidence, so every validator computes the same root:

1. Receipts are verified (node and client signatures) and de-duplicated by (node key, request hash) —
   a node can sign the same answer twice under different envelope nonces, which must not pay twice.
2. Each receipt's work (tokens in + tokens out) counts for the operator that registered its node on chain
   (Bonding's NodeRegistered events); receipts of unregistered nodes earn nothing.
3. The epoch's emission is split pro rata to work, rounding down; the remainder stays in the rewards pool.
4. The reward engine (docs/rewards.md) closes the epoch on the chain snapshot; the rewards it pays are
   added to each account's cumulative total, and the tree of cumulative totals is the epoch's root.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chain.merkle import RewardsTree
from chain.rewards import EpochClose, RewardParams, close_epoch
from chain.snapshot import ChainSnapshot, epoch_inputs
from protocols.eth import keccak256
from protocols.inference import VerifiedReceipt, verify_countersigned_receipt
from protocols.keys import peer_id_from_public_key
from validator.errors import SettlementError


def work_by_operator(
    receipts: Iterable[bytes | VerifiedReceipt], operator_of_peer: Mapping[bytes, str]
) -> dict[str, int]:
    """Tokens served per operator account, from countersigned receipts (raw bytes are verified here).

    `operator_of_peer` maps keccak256(binary peer id) to the operator address that registered the node.
    """
    seen: set[tuple[bytes, bytes]] = set()
    work: dict[str, int] = {}
    for item in receipts:
        receipt = item if isinstance(item, VerifiedReceipt) else verify_countersigned_receipt(item)
        key = (receipt.node_key, receipt.receipt.request_hash)
        if key in seen:
            continue
        seen.add(key)
        operator = operator_of_peer.get(keccak256(peer_id_from_public_key(receipt.node_key)))
        if operator is None:
            continue
        work[operator] = work.get(operator, 0) + receipt.receipt.tokens_in + receipt.receipt.tokens_out
    return work


def base_rewards(work: Mapping[str, int], emission: int) -> dict[str, int]:
    """`emission` wei split pro rata to work, rounded down (the remainder is not paid out)."""
    total = sum(work.values())
    if total == 0:
        raise SettlementError("no work by registered nodes in this epoch: nothing to settle")
    return {account: emission * amount // total for account, amount in sorted(work.items())}


@dataclass(frozen=True)
class EpochSettlement:
    epoch: int
    close: EpochClose
    cumulative: dict[str, int]
    tree: RewardsTree

    def paid(self, account: str) -> int:
        return self.close.accounts[account].reward if account in self.close.accounts else 0


def settle_epoch(
    epoch: int,
    snapshot: ChainSnapshot,
    rewards: Mapping[str, int],
    *,
    previous: EpochSettlement | None = None,
    banned: Iterable[str] = (),
    params: RewardParams | None = None,
) -> EpochSettlement:
    """Close `epoch` on `snapshot` with base `rewards`, carrying state and cumulative totals forward."""
    carried = previous.close.accounts if previous is not None else None
    inputs = epoch_inputs(snapshot, rewards, previous=carried, banned=banned)
    close = close_epoch(inputs, params or snapshot.params)
    cumulative = dict(previous.cumulative) if previous is not None else {}
    for account, result in close.accounts.items():
        if result.reward:
            cumulative[account] = cumulative.get(account, 0) + result.reward
    if not cumulative:
        raise SettlementError(f"epoch {epoch} pays nobody: there is no root to sign")
    return EpochSettlement(
        epoch=epoch, close=close, cumulative=cumulative, tree=RewardsTree.build(cumulative)
    )
