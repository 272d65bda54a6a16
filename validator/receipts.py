"""Receipts into a validator's evidence store: nodes submit them, validators fetch what they lack from each
other.

Submission (RECEIPT_PROTOCOL, one batch per stream): the node sends a `ReceiptBatch`; the validator admits
each receipt, stores the admitted ones in one transaction, commits, and only then answers a
`ReceiptBatchAck` with one verdict per receipt. A receipt is admitted when (`admit_receipt`, in order):
1. it verifies: the node's envelope signature, the client's countersignature, the schema (counts within
   the request's bounds);
2. it is paid: it carries a credit authorisation, signed in the Credits domain by the wallet it names, for
   its session key and model. Unpaid receipts earn nothing, so they are not worth storing;
3. it is not dated in the future, beyond clock skew;
4. its epoch (`started_at_ms // epoch_ms`) still takes receipts: until `submit_grace` after the epoch ends.
   After that the validators compare and settle the epoch, and a late receipt is refused for good.
5. with an `AdmissionGate` (the daemon always has one): the submitting peer and the wallet are within
   their quotas, the node is registered and the wallet funded (validator.admission).
A receipt already held, or for an answer already held (the spent set), is a "duplicate": final, like
"stored". Refusals are final too (the node stops sending that receipt to this validator).

Sync (RECEIPT_SYNC_PROTOCOL, one request per stream): a `ReceiptSyncRequest` without digests asks for a page
of the digests held for an epoch (with their count and commitment); one with digests asks for those
receipts. `fetch_missing` pages through another validator's digests and fetches and admits (steps 1-3,
and the epoch must be the one asked about) whatever this validator lacks, so after the epoch's sync every
validator holds the union of what nodes gave any of them. A fetch is bounded by progress, not by a total
deadline: a full epoch (1M receipts) takes minutes from one peer, so it goes on while every answer comes
within a stall interval, up to a ceiling; one that stops keeps what it stored and where it got to
(`SyncProgress`), so the next fetch from that peer resumes there.

Whichever way a receipt came in, its credit authorisation's signature was checked here, in this
service's Credits domain; the store records that (`store_admitted`) so the epoch's close does not recover
every authorisation's signer a second time.

Nothing a peer sends ends the service: malformed messages reset the stream, oversized ones are refused by
the stream's size limit, and every await has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from chain.errors import ChainError
from p2p import Dialer, MessageStream, StreamOpener
from pool.validator_peers import ValidatorPeer
from protocols.envelope import DEFAULT_MAX_SKEW_MS, clock_ms
from protocols.errors import ProtocolError
from protocols.eth import TypedDomain
from protocols.ids import RECEIPT_PROTOCOL, RECEIPT_SYNC_PROTOCOL
from protocols.inference import VerifiedReceipt, verify_countersigned_receipt
from protocols.messages import (
    MAX_COUNTERSIGNED_RECEIPT,
    MAX_RECEIPT_BATCH,
    ReceiptBatch,
    ReceiptBatchAck,
    ReceiptDigests,
    ReceiptSyncRequest,
    ReceiptVerdict,
    eth_signer,
)
from protocols.schema import decode_message, encode_message
from validator.admission import AdmissionGate
from validator.errors import ValidatorError
from validator.evidence import EvidenceStore
from validator.settlement import credit_digest

__all__ = [
    "MAX_BATCH_BYTES",
    "ReceiptRefused",
    "ReceiptService",
    "ReceiptWindow",
    "SyncGaveUp",
    "SyncProgress",
    "admit_receipt",
    "fetch_missing",
]

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = MAX_RECEIPT_BATCH * (MAX_COUNTERSIGNED_RECEIPT + 8) + 64
MAX_SYNC_REQUEST_BYTES = 16 * 1024
SYNC_STALL_S = 30.0
SYNC_CEILING_S = 3600.0


class ReceiptRefused(ValidatorError):
    """A receipt this validator does not take; the message says why (the node reads it)."""


class SyncGaveUp(ValidatorError):
    """A fetch from another validator stopped: the peer sent nothing for a stall interval, or the
    fetch ran past its ceiling. What it stored stays stored, and its `SyncProgress` says where to resume."""


@dataclass
class SyncProgress:
    """How far fetches of one epoch from one peer got: pass the same one to the next `fetch_missing` to
    resume after `after` (the last digest of the peer's listing already fetched) instead of listing the
    epoch from its start. `complete` once a fetch reached the listing's end."""

    after: bytes | None = None
    stored: int = 0
    complete: bool = False


@dataclass(frozen=True)
class ReceiptWindow:
    """When receipts are taken: epochs of `epoch_ms`, each open until `submit_grace_ms` after it ends."""

    epoch_ms: int
    submit_grace_ms: int
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS

    def epoch_of(self, started_at_ms: int) -> int:
        return started_at_ms // self.epoch_ms

    def closes_at_ms(self, epoch: int) -> int:
        """When `epoch` stops taking receipts (and its settlement begins)."""
        return (epoch + 1) * self.epoch_ms + self.submit_grace_ms

    def is_open(self, epoch: int, now_ms: int) -> bool:
        return now_ms < self.closes_at_ms(epoch)


@dataclass
class _CreditCache:
    """Credit authorisations already checked, by digest (bounded; an authorisation covers many receipts)."""

    capacity: int = 100_000
    checked: OrderedDict[bytes, bool] = field(default_factory=OrderedDict)

    def valid(self, verified: VerifiedReceipt, domain: TypedDomain) -> bool:
        credit = verified.receipt.credit
        assert credit is not None
        key = credit_digest(credit)
        known = self.checked.get(key)
        if known is None:
            try:
                known = eth_signer(credit, domain) == credit.client
            except ProtocolError:
                known = False
            self.checked[key] = known
            if len(self.checked) > self.capacity:
                self.checked.popitem(last=False)
        return known


def admit_receipt(
    data: bytes,
    *,
    window: ReceiptWindow,
    credits_domain: TypedDomain,
    now_ms: int,
    epoch: int | None = None,
    credits: _CreditCache | None = None,
) -> VerifiedReceipt:
    """Check a submitted receipt (module docstring, steps 1-4); returns it verified or raises ReceiptRefused.

    With `epoch` (a sync), the receipt must belong to that epoch instead of to an open one.
    """
    try:
        verified = verify_countersigned_receipt(data)
    except ProtocolError as exc:
        raise ReceiptRefused(f"invalid receipt: {exc}") from exc
    receipt = verified.receipt
    credit = receipt.credit
    if credit is None:
        raise ReceiptRefused("unpaid: the receipt carries no credit authorisation, so it earns nothing")
    if credit.session_key != receipt.client_key or credit.model != receipt.model:
        raise ReceiptRefused("the credit authorisation is for another session key or model")
    if not (credits or _CreditCache()).valid(verified, credits_domain):
        raise ReceiptRefused("the credit authorisation is not signed by its wallet in the Credits domain")
    if receipt.started_at_ms > now_ms + window.max_skew_ms:
        raise ReceiptRefused("the receipt starts in the future")
    receipt_epoch = window.epoch_of(receipt.started_at_ms)
    if epoch is not None and receipt_epoch != epoch:
        raise ReceiptRefused(f"the receipt is of epoch {receipt_epoch}, not {epoch}")
    if epoch is None and not window.is_open(receipt_epoch, now_ms):
        raise ReceiptRefused(f"epoch {receipt_epoch} is closed: receipts are taken until its settlement")
    return verified


@dataclass
class ReceiptStatistics:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    synced: int = 0
    bad_streams: int = 0


class ReceiptService:
    """Serves RECEIPT_PROTOCOL and RECEIPT_SYNC_PROTOCOL from `store` (register with `install`)."""

    def __init__(
        self,
        store: EvidenceStore,
        window: ReceiptWindow,
        credits_domain: TypedDomain,
        *,
        clock: Callable[[], int] = clock_ms,
        gate: AdmissionGate | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.window = window
        self.credits_domain = credits_domain
        self.clock = clock
        self._credits = _CreditCache()
        self._statistics = ReceiptStatistics()

    def statistics(self) -> ReceiptStatistics:
        return self._statistics

    def install(self, host: StreamOpener) -> None:
        host.set_stream_handler(RECEIPT_PROTOCOL, self.handle_submission)
        host.set_stream_handler(RECEIPT_SYNC_PROTOCOL, self.handle_sync)

    def admit(self, data: bytes, *, epoch: int | None = None) -> VerifiedReceipt:
        return admit_receipt(
            data,
            window=self.window,
            credits_domain=self.credits_domain,
            now_ms=self.clock(),
            epoch=epoch,
            credits=self._credits,
        )

    async def store_admitted(self, receipts: Iterable[VerifiedReceipt]) -> list[str]:
        """Store receipts `admit` took (`EvidenceStore.add_receipts`' statuses), with the fact that their
        authorisations verified in this service's Credits domain."""
        return await self.store.add_receipts(receipts, credits_verified_in=self.credits_domain)

    async def _read(self, stream: MessageStream, limit: int, expected: type):
        """The one message of a stream, or None after resetting a stream that sent a malformed one."""
        try:
            return decode_message(await stream.read_message(limit), expected)
        except ProtocolError as exc:
            self._statistics.bad_streams += 1
            log.info("malformed %s from %s: %s", expected.__name__, stream.peer_id, exc)
            await stream.reset()
            return None

    async def handle_submission(self, stream: MessageStream) -> None:
        """One node's batch: admit, store, commit, acknowledge. Never raises for what the peer sends."""
        batch = await self._read(stream, MAX_BATCH_BYTES, ReceiptBatch)
        if batch is None:
            return
        verdicts: list[ReceiptVerdict | None] = []
        admitted: list[tuple[int, VerifiedReceipt]] = []
        for index, data in enumerate(batch.receipts):
            try:
                admitted.append((index, self.admit(data)))
                verdicts.append(None)
            except ReceiptRefused as exc:
                verdicts.append(ReceiptVerdict(digest=_sha256(data), status="refused", reason=str(exc)[:256]))
        if self.gate is not None and admitted:
            epochs = [(self.window.epoch_of(v.receipt.started_at_ms), v) for _, v in admitted]
            try:
                screened = await self.gate.screen(str(stream.peer_id), epochs)
            except ChainError as exc:  # not the node's fault: no verdict, so it offers them again later
                log.warning("cannot screen receipts now (the chain does not answer): %s", exc)
                await stream.reset()
                return
            for (index, _), reason in zip(admitted, screened, strict=True):
                if reason is not None:
                    digest = _sha256(batch.receipts[index])
                    verdicts[index] = ReceiptVerdict(digest=digest, status="refused", reason=reason)
            admitted = [pair for pair, reason in zip(admitted, screened, strict=True) if reason is None]
        statuses = await self.store_admitted(verified for _, verified in admitted)
        for (index, _), status in zip(admitted, statuses, strict=True):
            verdicts[index] = ReceiptVerdict(digest=_sha256(batch.receipts[index]), status=status)
        final = [v for v in verdicts if v is not None]
        self._count(final)
        await stream.write_message(encode_message(ReceiptBatchAck(verdicts=tuple(final))))
        await stream.close()

    def _count(self, verdicts: list[ReceiptVerdict]) -> None:
        stats = self._statistics
        stats.batches += 1
        for verdict in verdicts:
            if verdict.status == "stored":
                stats.stored += 1
            elif verdict.status == "duplicate":
                stats.duplicates += 1
            else:
                stats.refused += 1

    async def handle_sync(self, stream: MessageStream) -> None:
        """Another validator's question about an epoch's receipts (module docstring)."""
        request = await self._read(stream, MAX_SYNC_REQUEST_BYTES, ReceiptSyncRequest)
        if request is None:
            return
        answer: ReceiptBatch | ReceiptDigests
        if request.digests:
            answer = ReceiptBatch(receipts=tuple(await self.store.countersigned(request.digests)))
        else:
            count, commitment = await self.store.commitment(request.epoch)
            page = await self.store.digests(request.epoch, after=request.after, limit=4097)
            answer = ReceiptDigests(
                epoch=request.epoch,
                count=count,
                commitment=commitment,
                digests=tuple(page[:4096]),
                more=len(page) > 4096,
            )
        await stream.write_message(encode_message(answer))
        await stream.close()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def _ask(
    host: StreamOpener, peer_id: str, request: ReceiptSyncRequest, expected: type, limit: int, timeout: float
) -> Any:
    stream = await host.open_stream(peer_id, RECEIPT_SYNC_PROTOCOL)
    try:
        await stream.write_message(encode_message(request), timeout=timeout)
        return decode_message(await stream.read_message(limit, timeout=timeout), expected)
    finally:
        await stream.close()


async def fetch_missing(
    host: Dialer,
    peer: ValidatorPeer,
    service: ReceiptService,
    epoch: int,
    *,
    stall_seconds: float = SYNC_STALL_S,
    ceiling_seconds: float = SYNC_CEILING_S,
    progress: SyncProgress | None = None,
) -> int:
    """Fetch from validator `peer` the receipts of `epoch` this validator lacks, admit and store them;
    returns how many were stored. Each exchange with the peer (a page of its listing, a batch of
    receipts) must be done within `stall_seconds`, and the whole fetch within `ceiling_seconds`, else
    SyncGaveUp; a peer that fails or misbehaves raises P2PError or ProtocolError. Whatever the outcome,
    what was stored stays stored and `progress` (when given) says how far the listing was fetched: the
    next fetch given it resumes there, or starts over once a fetch was complete (the peer may hold more
    by then)."""
    progress = progress or SyncProgress()
    if progress.complete:
        progress.after, progress.complete = None, False
    added = 0
    peer_id = peer.peer_id

    async def exchange(request: ReceiptSyncRequest, expected: type, limit: int) -> Any:
        with trio.move_on_after(stall_seconds):
            return await _ask(host, peer_id, request, expected, limit, stall_seconds)
        raise SyncGaveUp(f"validator {peer_id} sent nothing for {stall_seconds} s")

    try:
        with trio.fail_after(ceiling_seconds):
            await host.connect_any(peer_id, peer.addrs)
            while True:
                after = progress.after
                request = ReceiptSyncRequest(epoch=epoch, after=after)
                page = await exchange(request, ReceiptDigests, 256 * 1024)
                if page.epoch != epoch:
                    raise ProtocolError(f"asked for epoch {epoch}, got a listing of epoch {page.epoch}")
                if not page.digests:
                    break
                if after is not None and page.digests[0] <= after:  # a page ascends (its schema)
                    raise ProtocolError("the listing does not go on after the digest asked for")
                held = set(
                    await service.store.digests(epoch, after=after, until=page.digests[-1], limit=2**62)
                )
                missing = [d for d in page.digests if d not in held]
                for start in range(0, len(missing), MAX_RECEIPT_BATCH):
                    wanted = missing[start : start + MAX_RECEIPT_BATCH]
                    request = ReceiptSyncRequest(epoch=epoch, digests=tuple(wanted))
                    batch = await exchange(request, ReceiptBatch, MAX_BATCH_BYTES)
                    asked = set(wanted)
                    admitted = []
                    for data in batch.receipts:
                        with contextlib.suppress(ReceiptRefused):  # a peer's bad receipt is not ours to keep
                            verified = service.admit(data, epoch=epoch)
                            if verified.digest in asked:
                                admitted.append(verified)
                    stored = (await service.store_admitted(admitted)).count("stored")
                    added += stored
                    progress.stored += stored
                progress.after = page.digests[-1]
                if not page.more:
                    break
    except trio.TooSlowError:
        raise SyncGaveUp(
            f"the fetch of epoch {epoch} from validator {peer_id} ran past its ceiling of {ceiling_seconds} s"
        ) from None
    finally:
        service.statistics().synced += added
    progress.complete = True
    return added
