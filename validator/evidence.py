"""The validator's evidence and settlements, in SQLite (runtime.sqlite: committed before acknowledged).

- `receipts`: every countersigned receipt the validator accepted, with the facts settlement needs. The pair
  (node key, request hash) is unique for good: it is the spent set, so an answer is paid once, in one epoch,
  whatever epoch a second receipt for it claims. Of two receipts for the same answer in the same open epoch
  (a node may sign its receipt twice, under two envelope nonces) the smaller digest is kept, so validators
  that saw them in different orders still hold the same set.
- `credits`: the credit authorisations receipts carry, once each by digest; `credit_checks`, the EIP-712
  domains in which each one's signature was verified on its way in (admission and syncs check every one),
  so the epoch's close takes the wallet it names instead of recovering the signer again (~70 µs each).
- `settlements`: each closed epoch's result: the snapshot block, the receipt commitment, the rewards tree,
  the debit batches, the carry for the next epoch, and what has been done on chain about it;
- `progress`: the next epoch to close, so a restarted validator resumes where it stopped (epochs without
  receipts are closed without a settlement).

An epoch that is closed (settled, or passed without receipts) takes no receipt afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from chain.client import ValidatorSet
from chain.merkle import RewardsTree
from protocols import codec
from protocols.eth import TypedDomain
from protocols.inference import VerifiedReceipt
from protocols.messages import CreditAuthorisation
from runtime.sqlite import Database, open_database
from validator.errors import ValidatorError
from validator.settlement import (
    Carry,
    DebitBatch,
    EpochSettlement,
    ReceiptFacts,
    receipt_commitment,
    receipt_facts,
)

__all__ = ["EVIDENCE_FILE", "EvidenceError", "EvidenceStore", "SettlementRecord", "open_evidence_store"]

EVIDENCE_FILE = "evidence.sqlite"
_PAIRS_PER_QUERY = 400
_DIGESTS_PER_QUERY = 800
"""Values bound per statement, within SQLite's oldest limit of 999 parameters."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    digest BLOB PRIMARY KEY,        -- sha256 of the node-signed receipt envelope
    epoch INTEGER NOT NULL,         -- started_at_ms // epoch_ms
    node_key BLOB NOT NULL,
    request_hash BLOB NOT NULL,
    model BLOB NOT NULL,
    client_key BLOB NOT NULL,
    started_at_ms INTEGER NOT NULL,
    tokens INTEGER NOT NULL,        -- tokens_in + tokens_out
    credit BLOB,                    -- digest of its credit authorisation
    countersigned BLOB NOT NULL,    -- the evidence, as received
    received_at_ms INTEGER NOT NULL,
    UNIQUE (node_key, request_hash) -- the spent set
);
-- An epoch's facts in digest order, read from the index alone at the close (the table's rows hold the
-- evidence too, ~1 KB each); it replaced receipts_by_epoch (epoch, digest), its prefix.
CREATE INDEX IF NOT EXISTS receipts_facts ON receipts
    (epoch, digest, node_key, request_hash, model, client_key, started_at_ms, tokens, credit);
DROP INDEX IF EXISTS receipts_by_epoch;
CREATE TABLE IF NOT EXISTS credits (
    digest BLOB PRIMARY KEY,
    authorisation BLOB NOT NULL     -- the CreditAuthorisation's wire map, msgpack
);
CREATE TABLE IF NOT EXISTS credit_checks (
    digest BLOB NOT NULL,           -- credits.digest
    domain BLOB NOT NULL,           -- the separator of the EIP-712 domain its signature verified in
    PRIMARY KEY (digest, domain)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settlements (
    epoch INTEGER PRIMARY KEY,
    snapshot_block INTEGER NOT NULL,
    receipt_count INTEGER NOT NULL,
    receipts_commitment BLOB NOT NULL,
    tree TEXT,                      -- the rewards tree (chain.merkle document); NULL when nobody is paid
    debits TEXT NOT NULL,           -- JSON: [[batch id, [user hex...], [amount...]], ...]
    carry TEXT NOT NULL,            -- validator.settlement.Carry after this epoch
    deadline INTEGER NOT NULL,      -- when the epoch's signatures expire (Unix seconds)
    summary TEXT NOT NULL,          -- JSON: revenue, emission, paid and unpaid counts
    root_status TEXT NOT NULL,      -- none (no new root), pending, proposed; or final: activated,
                                    -- superseded (a later root is active), revoked, expired
    debits_settled TEXT NOT NULL,   -- JSON list of batch ids settled on chain (or expired unsettled)
    finished INTEGER NOT NULL,      -- 1 once the root and every debit batch need nothing more
    settled_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS progress (
    name TEXT PRIMARY KEY,          -- 'next_epoch': the first epoch not yet closed (settled or empty)
    value INTEGER NOT NULL
);
"""


class EvidenceError(ValidatorError):
    """The evidence store could not be opened, read or written."""


@dataclass(frozen=True)
class SettlementRecord:
    """A settled epoch as stored (see the module docstring)."""

    epoch: int
    snapshot_block: int
    receipt_count: int
    receipts_commitment: bytes
    tree: RewardsTree | None
    debits: tuple[DebitBatch, ...]
    carry: Carry
    deadline: int
    summary: dict
    root_status: str
    debits_settled: frozenset[int]

    @property
    def next_set(self) -> ValidatorSet | None:
        """The validator set the election chose for this epoch's root (None: carry the current one)."""
        chosen = self.summary.get("next_set")
        if chosen is None:
            return None
        return ValidatorSet(tuple(chosen["members"]), tuple(chosen["weights"]), chosen["epoch"])

    @property
    def finished(self) -> bool:
        """Nothing more to do on chain: the root is active (or needs none) and every batch is settled."""
        root_done = self.root_status not in ("pending", "proposed")
        return root_done and all(batch.batch_id in self.debits_settled for batch in self.debits)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EvidenceStore:
    """An open evidence store; use `open_evidence_store`. Every method is a trio coroutine."""

    def __init__(self, database: Database, epoch_ms: int) -> None:
        self._db = database
        self.path = database.path
        self.epoch_ms = epoch_ms
        self._commitments: dict[int, tuple[int, bytes]] = {}
        """Epoch -> `commitment`, until a receipt of it is stored: every page of a sync listing carries it,
        and an epoch of 1M receipts has 245 pages."""

    def epoch_of(self, started_at_ms: int) -> int:
        return started_at_ms // self.epoch_ms

    # ---- receipts ----
    async def add_receipts(
        self, receipts: Iterable[VerifiedReceipt], *, credits_verified_in: TypedDomain | None = None
    ) -> list[str]:
        """Store verified receipts in one transaction, committed before this returns; per receipt "stored",
        or "duplicate" when its answer is already held (or its epoch is settled). The receipts are taken in
        order, as if one at a time: of two for the same answer the smaller digest stays, whichever came
        first. A batch costs a few statements, not a few per receipt (a node submits 256 at a time).
        `credits_verified_in`: the domain in which the caller verified every one of their credit
        authorisations' signatures (validator.receipts does), recorded for `verified_credits`."""
        batch = [(verified, *receipt_facts(verified)) for verified in receipts]
        statuses: list[str] = []
        async with self._db.lock:
            settled = {row[0] for row in await self._db.execute("SELECT epoch FROM settlements")}
            rows = await self._db.execute("SELECT value FROM progress WHERE name = 'next_epoch'")
            closed_before = rows[0][0] if rows else 0
            held = await self._held_answers({(f.node_key, f.request_hash) for _, f, _ in batch})
            stored: dict[tuple[bytes, bytes], tuple] = {}  # answer -> the row this batch stores for it
            removed: list[tuple[bytes]] = []  # held receipts a smaller digest replaces
            credits: dict[bytes, bytes] = {}
            received_at = _now_ms()
            for verified, facts, credit in batch:
                epoch = self.epoch_of(facts.started_at_ms)
                answer = (facts.node_key, facts.request_hash)
                holding = held.get(answer)
                if (
                    epoch in settled
                    or epoch < closed_before
                    or (holding is not None and (holding[1] != epoch or holding[0] <= facts.digest))
                ):
                    statuses.append("duplicate")
                    continue
                if holding is not None and answer not in stored:
                    removed.append((holding[0],))  # held before this batch: delete it
                if credit is not None and facts.credit is not None and facts.credit not in credits:
                    credits[facts.credit] = codec.pack(credit.to_wire())
                held[answer] = (facts.digest, epoch)
                stored[answer] = (
                    facts.digest,
                    epoch,
                    facts.node_key,
                    facts.request_hash,
                    facts.model,
                    facts.client_key,
                    facts.started_at_ms,
                    facts.tokens,
                    facts.credit,
                    verified.countersigned,
                    received_at,
                )
                statuses.append("stored")
            if removed:
                await self._db.executemany("DELETE FROM receipts WHERE digest = ?", removed)
            if credits:
                await self._db.executemany("INSERT OR IGNORE INTO credits VALUES (?, ?)", credits.items())
                if credits_verified_in is not None:
                    await self._db.executemany(
                        "INSERT OR IGNORE INTO credit_checks VALUES (?, ?)",
                        ((digest, credits_verified_in.separator) for digest in credits),
                    )
            if stored:
                await self._db.executemany(
                    "INSERT INTO receipts VALUES (?,?,?,?,?,?,?,?,?,?,?)", stored.values()
                )
                for row in stored.values():
                    self._commitments.pop(row[1], None)
            await self._db.commit()
        return statuses

    async def _held_answers(
        self, answers: set[tuple[bytes, bytes]]
    ) -> dict[tuple[bytes, bytes], tuple[bytes, int]]:
        """(node key, request hash) -> (digest, epoch) of the receipt held for each of `answers` held."""
        held: dict[tuple[bytes, bytes], tuple[bytes, int]] = {}
        ordered = sorted(answers)
        for start in range(0, len(ordered), _PAIRS_PER_QUERY):
            chunk = ordered[start : start + _PAIRS_PER_QUERY]
            # CROSS JOIN keeps the asked pairs as the outer loop: one lookup in the spent set's index each.
            asked = ",".join(["(?, ?)"] * len(chunk))
            rows = await self._db.execute(
                f"SELECT r.node_key, r.request_hash, r.digest, r.epoch FROM (VALUES {asked}) AS asked"
                " CROSS JOIN receipts r ON r.node_key = asked.column1 AND r.request_hash = asked.column2",
                tuple(value for answer in chunk for value in answer),
            )
            held.update(((bytes(row[0]), bytes(row[1])), (bytes(row[2]), row[3])) for row in rows)
        return held

    async def digests(
        self, epoch: int, *, after: bytes | None = None, until: bytes | None = None, limit: int = 4096
    ) -> list[bytes]:
        """The digests held for `epoch`, ascending: those after `after` and up to `until` (inclusive)."""
        rows = await self._db.execute(
            "SELECT digest FROM receipts WHERE epoch = ? AND digest > ? AND digest <= ?"
            " ORDER BY digest LIMIT ?",
            (epoch, after or b"", until or b"\xff" * 33, limit),
        )
        return [bytes(row[0]) for row in rows]

    async def commitment(self, epoch: int) -> tuple[int, bytes]:
        """(count, receipt_commitment) of the receipts held for `epoch`."""
        async with self._db.lock:  # so a batch stored meanwhile cannot leave a stale one in the cache
            if epoch not in self._commitments:
                rows = await self._db.execute("SELECT digest FROM receipts WHERE epoch = ?", (epoch,))
                self._commitments[epoch] = len(rows), receipt_commitment(bytes(row[0]) for row in rows)
            return self._commitments[epoch]

    async def countersigned(self, digests: Iterable[bytes]) -> list[bytes]:
        """The evidence bytes of those of `digests` that are held, in the order asked."""
        wanted = list(digests)
        held: dict[bytes, bytes] = {}
        distinct = sorted(set(wanted))
        for start in range(0, len(distinct), _DIGESTS_PER_QUERY):
            chunk = distinct[start : start + _DIGESTS_PER_QUERY]
            rows = await self._db.execute(
                f"SELECT digest, countersigned FROM receipts WHERE digest IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            )
            held.update((bytes(row[0]), bytes(row[1])) for row in rows)
        return [held[digest] for digest in wanted if digest in held]

    async def facts(self, epoch: int) -> tuple[list[ReceiptFacts], dict[bytes, CreditAuthorisation]]:
        """What settlement needs of `epoch`'s receipts, and the authorisations they carry. The facts come
        from the receipts_facts index alone, each authorisation once: an epoch of 1M receipts paid through
        100k authorisations reads in seconds (a join read the table's rows and an authorisation per
        receipt)."""
        rows = await self._db.execute(
            "SELECT digest, node_key, request_hash, model, client_key, started_at_ms, tokens, credit"
            " FROM receipts INDEXED BY receipts_facts WHERE epoch = ?",
            (epoch,),
        )
        facts = list(itertools.starmap(ReceiptFacts, rows))  # the columns are its fields, in order
        wanted = sorted({f.credit for f in facts if f.credit is not None})
        credits = {}
        for start in range(0, len(wanted), _DIGESTS_PER_QUERY):
            chunk = wanted[start : start + _DIGESTS_PER_QUERY]
            for row in await self._db.execute(
                f"SELECT digest, authorisation FROM credits WHERE digest IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            ):
                credits[bytes(row[0])] = CreditAuthorisation.from_wire(codec.unpack(bytes(row[1])))
        return facts, credits

    async def verified_credits(self, epoch: int, domain: TypedDomain) -> set[bytes]:
        """The digests of the authorisations `epoch`'s receipts carry whose signatures were verified in
        `domain` when they were stored (`add_receipts`' `credits_verified_in`)."""
        rows = await self._db.execute(
            "SELECT digest FROM credit_checks WHERE domain = ? AND digest IN"
            " (SELECT credit FROM receipts INDEXED BY receipts_facts WHERE epoch = ?)",
            (domain.separator, epoch),
        )
        return {bytes(row[0]) for row in rows}

    async def receipt_epochs(self) -> list[int]:
        """Epochs with receipts held, ascending."""
        return [
            row[0] for row in await self._db.execute("SELECT DISTINCT epoch FROM receipts ORDER BY epoch")
        ]

    async def receipt_counts(self) -> dict[int, int]:
        """How many receipts are held per epoch (for the dashboard)."""
        rows = await self._db.execute("SELECT epoch, count(*) FROM receipts GROUP BY epoch ORDER BY epoch")
        return {row[0]: row[1] for row in rows}

    # ---- settlements ----
    async def next_epoch(self) -> int | None:
        """The first epoch not closed yet (None before any was)."""
        rows = await self._db.execute("SELECT value FROM progress WHERE name = 'next_epoch'")
        return rows[0][0] if rows else None

    async def close_epoch(self, epoch: int) -> None:
        """`epoch` is closed (settled, or it had no receipts): the next one is next."""
        async with self._db.lock:
            await self._db.execute(
                "INSERT INTO progress VALUES ('next_epoch', ?) ON CONFLICT (name) DO UPDATE SET value = ?"
                " WHERE value <= ?",
                (epoch + 1, epoch + 1, epoch),
            )
            await self._db.commit()

    async def record_settlement(
        self,
        settlement: EpochSettlement,
        *,
        snapshot_block: int,
        deadline: int,
        root_status: str,
        next_set: ValidatorSet | None = None,
    ) -> None:
        """Store a settled epoch (closing it for good), with the validator set its root installs when the
        election chose one."""
        summary: dict = {
            "revenue": settlement.revenue,
            "emission": settlement.emission,
            "paid": settlement.payments.paid,
            "unpaid": settlement.payments.unpaid,
            "awards": settlement.awards,
        }
        if next_set is not None:
            summary["next_set"] = {
                "members": list(next_set.members),
                "weights": list(next_set.weights),
                "epoch": next_set.epoch,
            }
        debits = [[b.batch_id, [u.hex() for u in b.users], list(b.amounts)] for b in settlement.debits]
        async with self._db.lock:
            await self._db.execute(
                "INSERT INTO settlements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    settlement.epoch,
                    snapshot_block,
                    settlement.receipt_count,
                    settlement.receipts_commitment,
                    settlement.tree.to_json() if settlement.tree is not None else None,
                    json.dumps(debits),
                    settlement.carry().to_json(),
                    deadline,
                    json.dumps(summary, sort_keys=True),
                    root_status,
                    "[]",
                    0,
                    _now_ms(),
                ),
            )
            await self._db.commit()

    async def settlement(self, epoch: int) -> SettlementRecord | None:
        rows = await self._db.execute("SELECT * FROM settlements WHERE epoch = ?", (epoch,))
        return _record(rows[0]) if rows else None

    async def last_settlement(self, before: int | None = None) -> SettlementRecord | None:
        """The latest settled epoch (before `before`, when given)."""
        rows = await self._db.execute(
            "SELECT * FROM settlements WHERE epoch < ? ORDER BY epoch DESC LIMIT 1",
            (before if before is not None else 2**63 - 1,),
        )
        return _record(rows[0]) if rows else None

    async def settlements_unexpired(self, at: int, before: int) -> list[SettlementRecord]:
        """Settlements of epochs before `before` whose signatures had not expired at Unix time `at`."""
        rows = await self._db.execute(
            "SELECT * FROM settlements WHERE deadline >= ? AND epoch < ? ORDER BY epoch", (at, before)
        )
        return [_record(row) for row in rows]

    async def unfinished(self) -> list[SettlementRecord]:
        """Settled epochs whose root or debits still wait for something on chain, oldest first."""
        rows = await self._db.execute("SELECT * FROM settlements WHERE finished = 0 ORDER BY epoch")
        return [_record(row) for row in rows]

    async def update_settlement(
        self, epoch: int, *, root_status: str | None = None, debit_settled: int | None = None
    ) -> SettlementRecord:
        """Record progress on chain (a new root status, a debit batch settled); returns the record."""
        async with self._db.lock:
            rows = await self._db.execute("SELECT * FROM settlements WHERE epoch = ?", (epoch,))
            if not rows:
                raise EvidenceError(f"epoch {epoch} has no settlement to update")
            record = _record(rows[0])
            status = root_status or record.root_status
            done = record.debits_settled | ({debit_settled} if debit_settled is not None else set())
            record = dataclasses.replace(record, root_status=status, debits_settled=frozenset(done))
            await self._db.execute(
                "UPDATE settlements SET root_status = ?, debits_settled = ?, finished = ? WHERE epoch = ?",
                (status, json.dumps(sorted(done)), int(record.finished), epoch),
            )
            await self._db.commit()
        return record


def _record(row) -> SettlementRecord:
    debits = tuple(
        DebitBatch(batch, tuple(bytes.fromhex(u) for u in users), tuple(amounts))
        for batch, users, amounts in json.loads(row[5])
    )
    return SettlementRecord(
        epoch=row[0],
        snapshot_block=row[1],
        receipt_count=row[2],
        receipts_commitment=bytes(row[3]),
        tree=RewardsTree.from_json(row[4]) if row[4] is not None else None,
        debits=debits,
        carry=Carry.from_json(row[6]),
        deadline=row[7],
        summary=json.loads(row[8]),
        root_status=row[9],
        debits_settled=frozenset(json.loads(row[10])),
    )


@contextlib.asynccontextmanager
async def open_evidence_store(data_dir: Path, *, epoch_ms: int) -> AsyncIterator[EvidenceStore]:
    """Open (creating) `data_dir/evidence.sqlite`. Must run inside `trio_asyncio.open_loop()`."""
    async with open_database(Path(data_dir) / EVIDENCE_FILE, _SCHEMA, error=EvidenceError) as database:
        yield EvidenceStore(database, epoch_ms)
