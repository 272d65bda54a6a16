"""Who may put receipts in a validator's store: junk costs its sender, not the validators.

A receipt that verifies can still be junk: signed by a throwaway wallet that holds no credit, or served by
a node nobody registered. Settlement would pay neither, but every stored receipt costs each validator
disk, a sync and a credit read at the close. So a node's submission (not a sync between validators, which
must end in the same union everywhere) also passes, in this order:

1. the submitting peer's quota: at most `receipts_per_peer` receipts offered per epoch, refused or not, so
   a peer pays for its junk with its own allowance, and nothing below is read for a peer over it;
2. the node is registered on chain (Bonding's registrations, read once and again at most every
   `recheck_seconds` when an unknown node shows up);
3. the paying wallet holds credit (Credits.creditsOf, read for all of a batch's unknown wallets in one
   call; a funded wallet stays funded for the epoch, an unfunded one is read again at most every
   `recheck_seconds`). Credit waiting to be withdrawn counts: it stays debitable for the answers given;
4. the wallet's quota: at most `receipts_per_wallet` receipts per epoch.

The reads are blocking chain calls (`read_credits(wallets)`, `read_nodes()`); they run in a worker thread.
Counters and caches are per epoch and dropped once an epoch is no longer offered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import trio

from chain.client import ChainClient
from chain.snapshot import read_credits as chain_credits
from chain.snapshot import read_node_operators
from protocols.eth import keccak256
from protocols.inference import VerifiedReceipt
from protocols.keys import peer_id_from_public_key

__all__ = ["AdmissionGate", "AdmissionLimits", "chain_gate"]

KEPT_EPOCHS = 3
"""Epochs whose counters are kept: the open one, the one in its grace period, and one spare."""


@dataclass(frozen=True)
class AdmissionLimits:
    """Per-epoch quotas and how often a miss may be read again (the validator daemon's config)."""

    receipts_per_peer: int = 2_000_000
    receipts_per_wallet: int = 200_000
    recheck_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.receipts_per_peer < 1 or self.receipts_per_wallet < 1 or self.recheck_seconds < 0:
            raise ValueError("receipt quotas must be positive and recheck_seconds not negative")


@dataclass
class _Epoch:
    offered: dict[str, int] = field(default_factory=dict)
    """Peer id -> receipts it offered this epoch."""
    admitted: dict[bytes, int] = field(default_factory=dict)
    """Wallet -> receipts admitted this epoch."""
    funded: set[bytes] = field(default_factory=set)
    unfunded: dict[bytes, float] = field(default_factory=dict)
    """Wallet -> when it was last read without credit."""


class AdmissionGate:
    """Screens a node's submitted receipts (module docstring); one per validator, shared by its streams."""

    def __init__(
        self,
        read_credits: Callable[[list[bytes]], dict[bytes, int]],
        read_nodes: Callable[[], Collection[bytes]],
        limits: AdmissionLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_credits = read_credits
        self._read_nodes = read_nodes
        self.limits = limits or AdmissionLimits()
        self._clock = clock
        self._epochs: dict[int, _Epoch] = {}
        self._nodes: frozenset[bytes] = frozenset()
        self._nodes_read_at: float | None = None
        self._peer_hashes: dict[bytes, bytes] = {}
        self.reads = 0
        """Chain reads made (credit batches and registration scans), for the benchmark."""

    def _epoch(self, epoch: int) -> _Epoch:
        if epoch not in self._epochs:
            self._epochs[epoch] = _Epoch()
            for old in sorted(self._epochs)[:-KEPT_EPOCHS]:
                del self._epochs[old]
        return self._epochs[epoch]

    def _due(self, read_at: float | None) -> bool:
        return read_at is None or self._clock() - read_at >= self.limits.recheck_seconds

    def _peer_hash(self, node_key: bytes) -> bytes:
        known = self._peer_hashes.get(node_key)
        if known is None:
            if len(self._peer_hashes) > 100_000:
                self._peer_hashes.clear()
            known = self._peer_hashes[node_key] = keccak256(peer_id_from_public_key(node_key))
        return known

    async def screen(self, peer_id: str, receipts: Sequence[tuple[int, VerifiedReceipt]]) -> list[str | None]:
        """For each (epoch, receipt) a peer submitted, None to admit it or why it is refused."""
        verdicts: list[str | None] = [None] * len(receipts)
        for index, (epoch, _) in enumerate(receipts):
            state = self._epoch(epoch)
            offered = state.offered.get(peer_id, 0) + 1
            state.offered[peer_id] = offered
            if offered > self.limits.receipts_per_peer:
                verdicts[index] = (
                    f"over this peer's quota of {self.limits.receipts_per_peer} receipts an epoch"
                )
        await self._check_nodes(receipts, verdicts)
        await self._check_wallets(receipts, verdicts)
        for index, (epoch, verified) in enumerate(receipts):
            if verdicts[index] is not None:
                continue
            state = self._epoch(epoch)
            wallet = verified.receipt.credit.client  # type: ignore[union-attr]  # admitted: paid
            admitted = state.admitted.get(wallet, 0) + 1
            if admitted > self.limits.receipts_per_wallet:
                verdicts[index] = (
                    f"over the wallet's quota of {self.limits.receipts_per_wallet} receipts an epoch"
                )
            else:
                state.admitted[wallet] = admitted
        return verdicts

    async def _check_nodes(
        self, receipts: Sequence[tuple[int, VerifiedReceipt]], verdicts: list[str | None]
    ) -> None:
        hashes = [self._peer_hash(verified.node_key) for _, verified in receipts]
        unknown = any(h not in self._nodes for h, v in zip(hashes, verdicts, strict=True) if v is None)
        if unknown and self._due(self._nodes_read_at):
            self._nodes = frozenset(await trio.to_thread.run_sync(self._read_nodes))
            self._nodes_read_at = self._clock()
            self.reads += 1
        for index, peer_hash in enumerate(hashes):
            if verdicts[index] is None and peer_hash not in self._nodes:
                verdicts[index] = "the node is not registered on chain: its receipts earn nothing"

    async def _check_wallets(
        self, receipts: Sequence[tuple[int, VerifiedReceipt]], verdicts: list[str | None]
    ) -> None:
        wanted: set[bytes] = set()
        for index, (epoch, verified) in enumerate(receipts):
            state = self._epoch(epoch)
            wallet = verified.receipt.credit.client  # type: ignore[union-attr]  # admitted: paid
            if (
                verdicts[index] is None
                and wallet not in state.funded
                and self._due(state.unfunded.get(wallet))
            ):
                wanted.add(wallet)
        if wanted:
            credits = await trio.to_thread.run_sync(self._read_credits, sorted(wanted))
            self.reads += 1
            now = self._clock()
            for epoch in {epoch for epoch, _ in receipts}:
                state = self._epoch(epoch)
                for wallet in wanted:
                    if credits.get(wallet, 0) > 0:
                        state.funded.add(wallet)
                        state.unfunded.pop(wallet, None)
                    else:
                        state.unfunded[wallet] = now
        for index, (epoch, verified) in enumerate(receipts):
            wallet = verified.receipt.credit.client  # type: ignore[union-attr]  # admitted: paid
            if verdicts[index] is None and wallet not in self._epoch(epoch).funded:
                verdicts[index] = "the paying wallet holds no credit: its receipts earn nothing"


def chain_gate(chain: ChainClient, limits: AdmissionLimits | None = None) -> AdmissionGate:
    """An AdmissionGate reading `chain` at its latest block: Credits.creditsOf in batches for funding,
    Bonding's registration events for nodes. Its reads raise ChainError when the chain does not answer."""

    def read_credits(wallets: list[bytes]) -> dict[bytes, int]:
        return {wallet: credit for wallet, (credit, _, _) in chain_credits(chain, "latest", wallets).items()}

    def read_nodes() -> Collection[bytes]:
        return read_node_operators(chain, "latest").keys()

    return AdmissionGate(read_credits, read_nodes, limits)
