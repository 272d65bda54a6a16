"""`serve_settlement`: a validator's money loop, epoch after epoch, between processes and on chain.

Started by the validator daemon in its nursery with the daemon's libp2p host, a chain client holding the
validator's key, its evidence store and a `SettlementConfig`. It runs:

- the receipt service (RECEIPT_PROTOCOL for nodes, RECEIPT_SYNC_PROTOCOL for validators, see
  validator.receipts) and this validator's announcement on VALIDATORS_TOPIC, so nodes and the other
  validators can find its peer;
- the settled epochs' rewards trees, page by page, to claimers (REWARDS_TREE_PROTOCOL: `dolphin chain
  claim --bootstrap` rebuilds the tree and checks its root against the chain's);
- the epoch cadence. Epoch E is the Unix time slice [E, E + 1) × `epoch_seconds`; receipts of E are taken
  until `submit_grace_seconds` after it ends. Then, after `sync_delay_seconds` (for clock skew), the
  validator fetches from every other current validator's peer what it lacks of E (so all of them hold
  the union; each fetch goes on while the peer answers within `sync_timeout_seconds`, up to half an
  epoch, and one that stopped resumes there the next time), waits for E's closing block (the first
  block at or after E's end), reads the chain there, settles (validator.settlement), and records the
  result. An epoch without receipts is not settled;
- the chain work of each settled epoch until it is done: sign the rewards root and the debit batches
  and publish the signatures on SETTLEMENT_TOPIC (again every `poll_seconds` until done, for late
  joiners); once a quorum of the current set signed the same message, relay it (`proposeRoot`,
  `settleDebits`), and after the root delay activate the root. Every validator may relay, in an order
  that rotates with the epoch, each waiting `relay_stagger_seconds` per rank and looking at the chain
  first, so the first one does it and the others see it done and pay no gas.

Joining late, or coming back from a backup, is catching up: a validator whose store is empty starts at
the epoch of the contracts' deployment once any root was proposed (one restored from a backup, where the
backup left off), waits
(once, up to `sync_timeout_seconds`) for discovery to find another validator, and settles each missed
epoch from the union of the receipts its peers hold and the chain at that epoch's closing block, exactly
as the incumbents did: every input of a root is public. Before recording an epoch (one it holds no
receipt of too) it compares its root with the one a quorum put on chain for that epoch, if any; on a
difference (receipts it still lacks) it records and signs nothing, fetches again and retries, so no later
epoch builds on an unchecked carry.

The next validator set signed with a root is the election's (validator.election) at the epoch's close:
the eligible validators who opted in, weighted by bond, or the current set carried forward while nobody
is eligible; it is stored with the settlement, so every later signature of that root names the same set.
`await awards(epoch)` and
`banned(epoch)` supply the epoch's protocol awards (wei per account: validators' rewards for caught
cheaters, users' for reports that led to a ban, which the slash did not pay) and off-chain suspensions;
they are inputs to the root, so they must be the same at every validator.

Chain calls run in a worker thread, one at a time. Nothing a peer sends stops the loop, and a chain that
is down is retried on the next poll.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from chain.address import checked_address
from chain.client import ChainClient, ValidatorSet
from chain.errors import ChainError
from chain.merkle import RewardsTree
from chain.quorum import QuorumRule, debit_batch_signature, epoch_root_signature
from p2p import DolphinHost, MessageStream, P2PError
from pool.validator_peers import (
    ValidatorDirectory,
    serve_validator_discovery,
    serve_validator_set,
    sign_announcement,
)
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.eth import EthAccount
from protocols.ids import REWARDS_TREE_PROTOCOL, SETTLEMENT_TOPIC, VALIDATORS_RECORD, VALIDATORS_TOPIC
from protocols.keys import Identity, peer_id_from_text
from protocols.messages import MAX_TREE_PAGE, RewardsTreePage, RewardsTreeRequest
from protocols.schema import decode_message, encode_message
from runtime.files import write_atomically
from validator.admission import AdmissionLimits, chain_gate
from validator.closing import EpochClose, close_on_chain, find_closing_block
from validator.election import elect, read_candidates
from validator.errors import ValidatorError
from validator.evidence import EvidenceStore, SettlementRecord
from validator.quorum import SignatureBook
from validator.receipts import ReceiptService, ReceiptWindow, SyncGaveUp, SyncProgress, fetch_missing
from validator.settlement import DebitBatch

__all__ = [
    "CarryMismatch",
    "SettlementConfig",
    "SettlementService",
    "rewards_tree_page",
    "serve_settlement",
    "tree_file_name",
]

log = logging.getLogger(__name__)

SIGNATURE_ENVELOPE_TTL_MS = 10 * 60 * 1000
ANNOUNCEMENT_LIFETIME_S = 24 * 3600
RECORD_TTL_S = 600
MAX_TREE_REQUEST_BYTES = 256


class CarryMismatch(ValidatorError):
    """This validator's settlement of an epoch differs from the root a quorum put on chain for it."""


Awards = Callable[[int], Awaitable[Mapping[str, int]]]
"""`await awards(epoch)`: the protocol awards of an epoch (POD wei per account), e.g. from the validator
state's rewards table."""


async def _no_awards(epoch: int) -> Mapping[str, int]:
    return {}


def rewards_tree_page(tree: RewardsTree | None, request: RewardsTreeRequest) -> RewardsTreePage:
    """The answer to `request` from the tree of its epoch (None: no tree here, an empty page with a zero
    root): the accounts after `request.after`, ascending, at most MAX_TREE_PAGE of them."""
    if tree is None:
        return RewardsTreePage(epoch=request.epoch, root=bytes(32), total=0)
    accounts = sorted(bytes.fromhex(a[2:]) for a in tree.amounts)
    after = request.after or b""
    chosen = [a for a in accounts if a > after][:MAX_TREE_PAGE]
    return RewardsTreePage(
        epoch=request.epoch,
        root=tree.root,
        total=len(accounts),
        accounts=tuple(chosen),
        amounts=tuple(tree.amounts[checked_address("0x" + a.hex())] for a in chosen),
    )


def tree_file_name(epoch: int) -> str:
    """The rewards tree file of `epoch` in a validator's trees dir."""
    return f"epoch-{epoch}.json"


@dataclass(frozen=True)
class SettlementConfig:
    """The money loop's settings (the validator daemon's config section); the defaults are a real
    network's. A local dev network uses seconds: e.g. epoch_seconds=20, submit_grace_seconds=4,
    sync_delay_seconds=1, relay_stagger_seconds=2, poll_seconds=1."""

    epoch_seconds: int = 86400
    """The settlement epoch, which nodes' ledgers must use too."""
    submit_grace_seconds: float = 600.0
    """How long after an epoch ends its receipts are still taken."""
    sync_delay_seconds: float = 60.0
    """After the grace, how long to wait (clock skew between validators) before fetching what others hold."""
    sync_timeout_seconds: float = 120.0
    """How long a fetch of receipts from another validator waits for its next answer before it gives up
    (a full epoch's fetch takes minutes, so it is bounded by progress, up to `sync_ceiling_seconds`); also
    how long catching up waits for discovery to find another validator."""
    relay_stagger_seconds: float = 30.0
    """Each rank waits this long longer before relaying what others may relay first."""
    poll_seconds: float = 15.0
    """How often the chain is checked and own signatures republished."""
    announce_seconds: float = 60.0
    """How often this validator announces its peer."""
    signature_ttl_seconds: int = 6 * 86400
    """Signatures expire this long after the closing block (the contracts allow at most 7 days)."""
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    """Per-epoch receipt quotas of a submitting peer and of a paying wallet (validator.admission)."""
    first_epoch: int | None = None
    """The first epoch to settle when the store has none settled (default: the epoch running at start)."""

    def __post_init__(self) -> None:
        if self.epoch_seconds < 1 or self.poll_seconds <= 0 or self.submit_grace_seconds < 0:
            raise ValueError(
                "epoch_seconds and poll_seconds must be positive, submit_grace_seconds not negative"
            )
        if not 0 < self.signature_ttl_seconds <= 7 * 86400:
            raise ValueError("signature_ttl_seconds must be within (0, 7 days]")

    @property
    def sync_ceiling_seconds(self) -> float:
        """The most one fetch from another validator may take while it progresses: half an epoch (at least
        the stall interval), since the epoch after it closes one epoch later (an epoch of 1M receipts
        takes minutes from one peer: docs/validator.md)."""
        return max(self.sync_timeout_seconds, self.epoch_seconds / 2)

    @property
    def window(self) -> ReceiptWindow:
        return ReceiptWindow(self.epoch_seconds * 1000, int(self.submit_grace_seconds * 1000))


@dataclass
class _Relay:
    """When a quorum for one message was first seen here (relaying is staggered from that moment)."""

    quorum_seen: dict[bytes, float] = field(default_factory=dict)


class SettlementService:
    """The money loop (module docstring); `serve_settlement` starts one."""

    def __init__(
        self,
        host: DolphinHost,
        chain: ChainClient,
        store: EvidenceStore,
        config: SettlementConfig,
        *,
        awards: Awards | None = None,
        banned: Callable[[int], Iterable[str]] | None = None,
        trees_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.trees_dir = trees_dir
        self.chain = chain
        self.store = store
        self.config = config
        self.identity = Identity(host.signing_seed())
        self.wallet = EthAccount(bytes(chain.account.key)) if chain.account is not None else None
        self.awards = awards or _no_awards
        self.banned = banned or (lambda epoch: ())
        self.receipts = ReceiptService(
            store, config.window, chain.domain("Credits"), gate=chain_gate(chain, config.admission)
        )
        self.directory = ValidatorDirectory(chain.domain("ValidatorQuorum"), frozenset())
        self.book = SignatureBook(chain.domain("RewardsDistributor"), chain.domain("Credits"), frozenset())
        self._chain_lock = trio.Lock()
        self._relay = _Relay()
        self._sync_progress: dict[tuple[int, str], SyncProgress] = {}  # (epoch, peer id) -> how far
        self.settled_through: int | None = None

    # ---------------------------------------------------------------- plumbing

    async def _on_chain(self, function: Callable[..., Any], *args: Any) -> Any:
        async with self._chain_lock:
            return await trio.to_thread.run_sync(function, *args)

    def _read_members(self) -> frozenset[bytes] | None:
        try:
            return frozenset(bytes.fromhex(m[2:]) for m in self.chain.validator_set().members)
        except ChainError as exc:
            log.warning("could not read the validator set (keeping the last one): %s", exc)
            return None

    async def _publish(self, topic: str, data: bytes) -> None:
        try:
            await self.host.gossip.publish(topic, data)
        except P2PError as exc:
            log.info("could not publish on %s (next round retries): %s", topic, exc)

    def statistics(self) -> dict[str, Any]:
        receipts = self.receipts.statistics()
        return {
            "settled_through": self.settled_through,
            "validator_peers": len(self.directory.peers()),
            "receipts_stored": receipts.stored,
            "receipts_duplicate": receipts.duplicates,
            "receipts_refused": receipts.refused,
            "receipts_synced": receipts.synced,
        }

    # ---------------------------------------------------------------- serving

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; started once the receipt service and the topics are up."""
        async with trio.open_nursery() as nursery:
            self.receipts.install(self.host)
            self.host.set_stream_handler(REWARDS_TREE_PROTOCOL, self.handle_tree_request)
            await nursery.start(serve_validator_set, self._read_members, self.directory, self.book)
            await self.host.gossip.subscribe(VALIDATORS_TOPIC, self.directory.validate)
            await self.host.gossip.subscribe(SETTLEMENT_TOPIC, self.book.validate)
            await nursery.start(self._serve_record)
            await nursery.start(
                functools.partial(serve_validator_discovery, self.host, interval=self.config.announce_seconds)
            )
            nursery.start_soon(self._serve_announcements)
            nursery.start_soon(self._serve_epochs)
            nursery.start_soon(self._serve_chain_work)
            task_status.started()

    async def handle_tree_request(self, stream: MessageStream) -> None:
        """A claimer asks for a page of a settled epoch's rewards tree (`RewardsTreeRequest`); an epoch
        without a tree here gets an empty page with a zero root. Never raises for what the peer sends."""
        try:
            request = decode_message(await stream.read_message(MAX_TREE_REQUEST_BYTES), RewardsTreeRequest)
        except ProtocolError as exc:
            log.info("malformed rewards tree request from %s: %s", stream.peer_id, exc)
            await stream.reset()
            return
        record = await self.store.settlement(request.epoch)
        page = rewards_tree_page(record.tree if record is not None else None, request)
        await stream.write_message(encode_message(page))
        await stream.close()

    async def _serve_record(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Our peer's address in the DHT under VALIDATORS_RECORD, so nodes and validators connect to us."""
        try:
            await self.host.dht.serve_record(
                VALIDATORS_RECORD, self.host.advertised_addrs, RECORD_TTL_S, task_status=task_status
            )
        except P2PError as exc:  # no address to announce: nodes still find us through other validators
            log.warning("cannot announce this validator in the DHT: %s", exc)
            task_status.started()

    async def _serve_announcements(self) -> None:
        if self.wallet is None:
            return
        peer_id = peer_id_from_text(self.host.peer_id)
        domain = self.chain.domain("ValidatorQuorum")
        while True:
            addrs = self.host.advertised_addrs()
            if addrs:
                data = sign_announcement(
                    self.identity,
                    peer_id,
                    self.wallet,
                    domain,
                    addrs,
                    expiry=int(time.time()) + ANNOUNCEMENT_LIFETIME_S,
                )
                await self._publish(VALIDATORS_TOPIC, data)
            await trio.sleep(self.config.announce_seconds)

    # ---------------------------------------------------------------- epochs

    async def _first_epoch(self) -> int:
        """Where the store left off; else `first_epoch`; else, on a network that has settled a root, the
        epoch of the deployment's first block: a validator that starts fresh on a running network rebuilds
        every settled epoch from the receipts its peers hold and the chain, as the incumbents settled
        them. On a network that never settled one, the epoch running now."""
        resume = await self.store.next_epoch()
        if resume is not None:
            return resume
        if self.config.first_epoch is not None:
            return self.config.first_epoch

        def history_starts() -> int | None:
            if not self.chain.events("RewardsDistributor", "RootProposed"):
                return None
            first = self.chain.deployment.first_block
            return int(self.chain.w3.eth.get_block(first)["timestamp"]) // self.config.epoch_seconds

        while True:
            try:
                start = await self._on_chain(history_starts)
                return start if start is not None else int(time.time()) // self.config.epoch_seconds
            except (ChainError, ValueError) as exc:  # web3 raises ValueError for a missing block
                log.warning("cannot read the network's settlement history (retrying): %s", exc)
                await trio.sleep(self.config.poll_seconds)

    async def _await_peers(self) -> None:
        """Catching up (a fresh start or a restored backup): give discovery up to sync_timeout_seconds to
        find another validator, so past epochs are settled from the union of receipts, not from ours."""
        with trio.move_on_after(self.config.sync_timeout_seconds):
            while not any(p.peer_id != self.host.peer_id for p in self.directory.peers()):
                await trio.sleep(min(1.0, self.config.poll_seconds))
            return
        log.warning(
            "found no other validator in %g s: past epochs the chain holds roots of wait for their receipts",
            self.config.sync_timeout_seconds,
        )

    async def _serve_epochs(self) -> None:
        epoch = await self._first_epoch()
        window = self.config.window
        awaited_peers = False
        while True:
            start_at = window.closes_at_ms(epoch) / 1000 + self.config.sync_delay_seconds
            if not awaited_peers and time.time() > start_at + self.config.poll_seconds:
                await self._await_peers()
                awaited_peers = True
            await trio.sleep(max(0.0, start_at - time.time()))
            await self._sync(epoch)
            while True:
                try:
                    await self._settle(epoch)
                    break
                except CarryMismatch as exc:
                    log.error("%s: fetching the epoch's receipts again before retrying", exc)
                    await trio.sleep(self.config.poll_seconds)
                    await self._sync(epoch)
                except ChainError as exc:
                    log.warning("settling epoch %d failed (retrying): %s", epoch, exc)
                    await trio.sleep(self.config.poll_seconds)
            await self.store.close_epoch(epoch)
            self._sync_progress = {k: v for k, v in self._sync_progress.items() if k[0] > epoch}
            self.settled_through = epoch
            epoch += 1

    async def _sync(self, epoch: int) -> None:
        """Fetch what the other validators hold of `epoch` and this one lacks."""
        async with trio.open_nursery() as nursery:
            for peer in self.directory.peers():
                if peer.peer_id != self.host.peer_id:
                    nursery.start_soon(self._sync_from, peer, epoch)

    async def _sync_from(self, peer, epoch: int) -> None:
        """Fetch from one peer, resuming where the last fetch of `epoch` from it stopped."""
        progress = self._sync_progress.setdefault((epoch, peer.peer_id), SyncProgress())
        try:
            added = await fetch_missing(
                self.host,
                peer,
                self.receipts,
                epoch,
                stall_seconds=self.config.sync_timeout_seconds,
                ceiling_seconds=self.config.sync_ceiling_seconds,
                progress=progress,
            )
        except (P2PError, ProtocolError, SyncGaveUp) as exc:
            log.info(
                "could not sync epoch %d from validator %s (%d receipts fetched so far): %s",
                epoch,
                peer.peer_id,
                progress.stored,
                exc,
            )
            return
        if added:
            log.info("fetched %d receipts of epoch %d from validator %s", added, epoch, peer.peer_id)

    async def _settle(self, epoch: int) -> None:
        facts, credits = await self.store.facts(epoch)
        if not facts:
            # Nothing here to settle: an empty epoch, unless a quorum settled receipts of it that this
            # validator has yet to fetch (it caught up before discovery found a peer). Closing that one
            # would skip it for good and leave every later carry unchecked.
            await self._check_against_chain(epoch, None)
            return
        verified = await self.store.verified_credits(epoch, self.receipts.credits_domain)
        epoch_ms = self.config.epoch_seconds * 1000
        while (block := await self._on_chain(find_closing_block, self.chain, epoch, epoch_ms)) is None:
            await trio.sleep(self.config.poll_seconds)
        previous = await self.store.last_settlement(before=epoch)
        # Signatures live signature_ttl_seconds after their closing block, which is before this one.
        recent = await self.store.settlements_unexpired(
            int(time.time()) - 2 * self.config.signature_ttl_seconds, epoch
        )
        awards = await self.awards(epoch)

        def close_and_elect() -> tuple[EpochClose, ValidatorSet]:
            closed = close_on_chain(
                self.chain,
                epoch,
                epoch_ms,
                block,
                facts,
                credits,
                previous=previous,
                recent=recent,
                awards=awards,
                banned=self.banned(epoch),
                verified_credits=verified,
            )
            current = self.chain.validator_set(block=block)
            candidates = read_candidates(self.chain, closed.snapshot, closed.settlement.close)
            return closed, elect(candidates, current, epoch=epoch)

        closed, next_set = await self._on_chain(close_and_elect)
        settlement = closed.settlement
        tree = settlement.tree
        await self._check_against_chain(epoch, tree)
        changed = tree is not None and (
            previous is None or previous.tree is None or previous.tree.root != tree.root
        )
        deadline = closed.snapshot.timepoint + self.config.signature_ttl_seconds
        await self.store.record_settlement(
            settlement,
            snapshot_block=block,
            deadline=deadline,
            root_status="pending" if changed else "none",
            next_set=next_set,
        )
        if tree is not None and self.trees_dir is not None:
            write_atomically(self.trees_dir / tree_file_name(epoch), tree.to_json().encode())
        log.info(
            "settled epoch %d at block %d: %d receipts (%d paid), revenue %d, emission %d wei, root %s",
            epoch,
            block,
            settlement.receipt_count,
            settlement.payments.paid,
            settlement.revenue,
            settlement.emission,
            "0x" + tree.root.hex() if tree is not None else "none",
        )

    async def _check_against_chain(self, epoch: int, tree: RewardsTree | None) -> None:
        """Raise CarryMismatch when the chain holds a root for `epoch` (proposed or activated by a quorum)
        and ours differs: this validator lacks receipts or its carry is not the incumbents'. Nothing of
        such an epoch is recorded or signed, and nothing after it builds on it."""
        proposed = await self._on_chain(self.chain.rewards_distributor.proposed_root, epoch)
        root, status = bytes(proposed[0]), proposed[4]
        if status not in (1, 3):  # pending or activated (a revoked root is no reference)
            return
        ours = tree.root if tree is not None else None
        if ours != root:
            mine = "0x" + ours.hex() if ours is not None else "none"
            raise CarryMismatch(f"epoch {epoch} settles to root {mine} here but to 0x{root.hex()} on chain")

    # ---------------------------------------------------------------- chain work

    async def _serve_chain_work(self) -> None:
        while True:
            try:
                for record in await self.store.unfinished():
                    await self._advance(record)
            except ChainError as exc:
                log.warning("chain work failed (retrying): %s", exc)
            await trio.sleep(self.config.poll_seconds)

    async def _quorum(self) -> QuorumRule:
        return await self._on_chain(self.chain.quorum_rule)

    def _my_turn(self, digest: bytes, epoch: int, rule: QuorumRule) -> bool:
        """Whether this validator relays now: quorum seen at least rank × stagger seconds ago."""
        seen = self._relay.quorum_seen.setdefault(digest, time.monotonic())
        members = sorted(rule.weights)
        me = self.wallet.address if self.wallet is not None else None
        rank = (members.index(me) - epoch) % len(members) if me in members else len(members)
        return time.monotonic() - seen >= rank * self.config.relay_stagger_seconds

    async def _advance(self, record: SettlementRecord) -> None:
        rule = await self._quorum()
        if record.root_status in ("pending", "proposed"):
            await self._advance_root(record, rule)
        for batch in record.debits:
            if batch.batch_id not in record.debits_settled:
                await self._advance_debit(record, batch, rule)

    async def _next_set(self, record: SettlementRecord) -> ValidatorSet:
        if record.next_set is not None:
            return record.next_set
        # Settled before the election was stored with settlements: the set at the closing block.
        return await self._on_chain(lambda: self.chain.validator_set(block=record.snapshot_block))

    async def _advance_root(self, record: SettlementRecord, rule: QuorumRule) -> None:
        epoch, tree = record.epoch, record.tree
        assert tree is not None
        status, activates_at = await self._on_chain(self.chain.root_status, epoch)
        active_epoch = (await self._on_chain(self.chain.rewards_distributor.active_root))[0]
        now = await self._on_chain(self.chain.chain_time)
        final = {"activated": "activated", "revoked": "revoked"}.get(status)
        if status in ("none", "pending") and active_epoch >= epoch > 0:
            final = "superseded"  # a later root is active: its cumulative amounts include this epoch's
        elif status == "none" and now > record.deadline:
            final = "expired"
        if final is not None:
            await self.store.update_settlement(epoch, root_status=final)
            log.info("the root of epoch %d is %s", epoch, final)
            return
        next_set = await self._next_set(record)
        if status == "pending":
            if record.root_status != "proposed":
                await self.store.update_settlement(epoch, root_status="proposed")
            if now >= activates_at and self._my_turn(b"activate" + epoch.to_bytes(32, "big"), epoch, rule):
                try:
                    await self._on_chain(self.chain.activate_root, epoch)
                    log.info("activated the root of epoch %d", epoch)
                except ChainError as exc:  # someone else was first, or a later root superseded it
                    log.info("activating the root of epoch %d: %s", epoch, exc)
            return
        if self.wallet is None or self.wallet.address not in rule.weights:
            signature_digest = None
        else:
            domain = self.chain.domain("RewardsDistributor")
            message = epoch_root_signature(self.wallet, domain, epoch, tree, record.deadline, next_set)
            signature_digest = self.book.add(message)
            await self._publish(
                SETTLEMENT_TOPIC, envelope.sign(message, self.identity, ttl_ms=SIGNATURE_ENVELOPE_TTL_MS)
            )
        if signature_digest is None:
            return
        signatures = self.book.signatures(signature_digest)
        if not rule.reached(signatures) or not self._my_turn(signature_digest, epoch, rule):
            return
        try:
            activates = await self._on_chain(
                lambda: self.chain.propose_root(
                    epoch, tree, record.deadline, list(signatures.values()), next_set
                )
            )
        except ChainError as exc:
            log.info("proposing the root of epoch %d: %s", epoch, exc)
            return
        await self.store.update_settlement(epoch, root_status="proposed")
        log.info(
            "proposed the root of epoch %d (%d signatures), activatable at %d",
            epoch,
            len(signatures),
            activates,
        )

    async def _advance_debit(self, record: SettlementRecord, batch: DebitBatch, rule: QuorumRule) -> None:
        if await self._on_chain(self.chain.credits.is_settled, batch.batch_id):
            await self.store.update_settlement(record.epoch, debit_settled=batch.batch_id)
            log.info("debit batch %d of epoch %d is settled", batch.batch_id, record.epoch)
            return
        if await self._on_chain(self.chain.chain_time) > record.deadline:
            # Its signatures expired unrelayed (no quorum in time): it will never be debited, and later
            # epochs must not count it as pending against the clients' credit.
            await self.store.update_settlement(record.epoch, debit_settled=batch.batch_id)
            log.error(
                "debit batch %d of epoch %d expired before a quorum relayed it", batch.batch_id, record.epoch
            )
            return
        if self.wallet is None or self.wallet.address not in rule.weights:
            return
        message = debit_batch_signature(
            self.wallet,
            self.chain.domain("Credits"),
            batch.batch_id,
            batch.users,
            batch.amounts,
            record.deadline,
        )
        digest = self.book.add(message)
        await self._publish(
            SETTLEMENT_TOPIC, envelope.sign(message, self.identity, ttl_ms=SIGNATURE_ENVELOPE_TTL_MS)
        )
        signatures = self.book.signatures(digest)
        if not rule.reached(signatures) or not self._my_turn(digest, record.epoch, rule):
            return
        try:
            total = await self._on_chain(
                lambda: self.chain.settle_debits(
                    batch.batch_id, batch.users, batch.amounts, record.deadline, list(signatures.values())
                )
            )
        except ChainError as exc:
            log.info("settling debit batch %d: %s", batch.batch_id, exc)
            return
        await self.store.update_settlement(record.epoch, debit_settled=batch.batch_id)
        log.info("settled debit batch %d of epoch %d: %d to the buyback", batch.batch_id, record.epoch, total)


async def serve_settlement(
    host: DolphinHost,
    chain: ChainClient,
    store: EvidenceStore,
    config: SettlementConfig,
    *,
    awards: Awards | None = None,
    banned: Callable[[int], Iterable[str]] | None = None,
    trees_dir: Path | None = None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a validator's money loop (module docstring) until cancelled; `task_status.started` gets the
    `SettlementService` (for statistics). Each settled epoch's rewards tree is written to
    `trees_dir`/epoch-<N>.json (what `dolphin chain claim --tree` reads) when given."""
    service = SettlementService(host, chain, store, config, awards=awards, banned=banned, trees_dir=trees_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve)
        task_status.started(service)
