"""An epoch's close on chain: find its closing block, read everything settlement needs there, settle.

Blocking (web3): the daemon runs these in `trio.to_thread`. Every value is read at the closing block (or
between the previous closing block and this one, for the time-weighted POD price), so every validator
that closes the epoch from the same evidence reads the same inputs and computes the same root.

The closing block of epoch E is the first block whose timestamp is at or after E's end (chain.snapshot
`closing_block`). What a client may be debited is its credit there, less the debits of earlier epochs
that were not settled on chain by then, and less its pending withdrawal request if it was made before the
epoch began (chain.snapshot.read_available_credit): the spendable credit nodes served against.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from chain.client import ChainClient
from chain.snapshot import (
    ChainSnapshot,
    closing_block,
    read_available_credit,
    read_pod_price,
    read_prices,
    read_settled_batches,
    read_snapshot,
)
from protocols.messages import CreditAuthorisation
from validator.evidence import SettlementRecord
from validator.settlement import Carry, EpochMarket, EpochSettlement, ReceiptFacts, settle_epoch

__all__ = ["EpochClose", "close_on_chain", "find_closing_block", "pending_debits"]


@dataclass(frozen=True)
class EpochClose:
    """A settled epoch with the block it was closed at."""

    settlement: EpochSettlement
    block: int
    snapshot: ChainSnapshot


def find_closing_block(chain: ChainClient, epoch: int, epoch_ms: int) -> int | None:
    """The closing block of `epoch`, or None while the chain has not passed its end yet."""
    return closing_block(chain, -(-(epoch + 1) * epoch_ms // 1000))


def pending_debits(
    chain: ChainClient, block: int, timepoint: int, earlier: Iterable[SettlementRecord]
) -> dict[bytes, int]:
    """Per wallet, the debits of `earlier` settlements still pending at `block` (time `timepoint`): not
    settled by Credits there, and not expired (deadline at or after `timepoint`). Only chain state at the
    block decides, never what this validator happens to know, so every validator gets the same."""
    pending: dict[bytes, int] = {}
    for record in earlier:
        if record.deadline < timepoint:
            continue
        settled = read_settled_batches(chain, block, [b.batch_id for b in record.debits])
        for batch in record.debits:
            if batch.batch_id not in settled:
                for user, amount in zip(batch.users, batch.amounts, strict=True):
                    pending[user] = pending.get(user, 0) + amount
    return pending


def close_on_chain(
    chain: ChainClient,
    epoch: int,
    epoch_ms: int,
    block: int,
    receipts: Sequence[ReceiptFacts],
    authorisations: Mapping[bytes, CreditAuthorisation],
    *,
    previous: SettlementRecord | None = None,
    recent: Iterable[SettlementRecord] = (),
    awards: Mapping[str, int] | None = None,
    banned: Iterable[str] = (),
    verified_credits: Collection[bytes] = (),
) -> EpochClose:
    """Read the chain at `block` (epoch's closing block) and settle `epoch` from `receipts` (module
    docstring). `previous` is the last settled epoch, `recent` the earlier settlements whose debit batches
    may still be pending (those whose signatures had not expired at the closing block; more do no
    harm), `verified_credits` the authorisations whose signatures were verified in the chain's Credits
    domain on their way into the evidence store (settle_epoch)."""
    since = previous.snapshot_block if previous is not None else None
    snapshot = read_snapshot(chain, block, epoch_start_block=since + 1 if since is not None else None)
    wallets = {credit.client for credit in authorisations.values()}
    pending = pending_debits(chain, block, snapshot.timepoint, recent)
    market = EpochMarket(
        prices=read_prices(chain, block, {f.model for f in receipts}),
        available=read_available_credit(chain, block, wallets, pending, epoch * epoch_ms // 1000),
        operators=snapshot.node_operators,
        pod_per_unit=read_pod_price(chain, block, since),
        credits_domain=chain.domain("Credits"),
    )
    settlement = settle_epoch(
        epoch,
        epoch_ms,
        receipts,
        authorisations,
        snapshot,
        market,
        previous=previous.carry if previous is not None else Carry(),
        awards=awards,
        banned=banned,
        verified_credits=verified_credits,
    )
    return EpochClose(settlement, block, snapshot)
