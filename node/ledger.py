"""The node's ledger: countersigned receipts and the replay cache's nonces, in SQLite.

SQLite in WAL mode with `synchronous=FULL`, through aiosqlite, inside trio via trio-asyncio
(`runtime.sqlite`; the daemon runs in `trio_asyncio.open_loop()`). `store_receipt` returns only once the
receipt is committed, and the node acknowledges a receipt to its client only after that: an acknowledged
receipt survives `kill -9` and a power cut.

Each receipt is filed under an epoch from the node's own clock: `started_at_ms // epoch_ms` (Unix time
cut into `epoch_ms` slices, 24 hours by default). Settlement binds receipts to chain epochs itself; this
number is for the operator's totals and for `dolphin node receipts --epoch N`.

Nonces of accepted requests are kept until their request expires, so a request replayed after a restart
is still refused. They are written in small batches, off the path of the answer; a crash can lose the
last fraction of a second of them, and those requests' replays would be answered again (to nobody who
can read the answer; settlement counts a receipt once).

Receipts go to the validators (node.submission): for each validator's peer, the ledger remembers its
final verdict on each receipt (stored, already held, refused), so nothing is sent twice to one validator
and nothing unacknowledged is forgotten.

Nothing here holds a prompt or an answer: receipts carry hashes and counts only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import trio
import trio_asyncio

from node.errors import NodeError
from protocols.envelope import ReplayCache
from protocols.errors import ReplayError
from protocols.inference import VerifiedReceipt
from runtime.sqlite import Database, open_database

__all__ = [
    "DEFAULT_EPOCH_MS",
    "LEDGER_FILE",
    "EpochTotal",
    "Ledger",
    "LedgerError",
    "PersistentReplayCache",
    "ReceiptRow",
    "open_ledger",
    "read_ledger",
]

LEDGER_FILE = "ledger.sqlite"
T = TypeVar("T")
DEFAULT_EPOCH_MS = 24 * 3600 * 1000
NONCE_FLUSH_SECONDS = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    digest BLOB PRIMARY KEY,        -- sha256 of the node-signed receipt envelope
    request_id BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    model BLOB NOT NULL,
    client BLOB,                    -- the paying wallet, when its credit authorisation verified
    client_key BLOB NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    first_token_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    countersigned BLOB NOT NULL,    -- the evidence, as the client sent it
    stored_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_by_epoch ON receipts (epoch);
CREATE INDEX IF NOT EXISTS receipts_by_start ON receipts (started_at_ms, digest);
CREATE TABLE IF NOT EXISTS nonces (
    key BLOB PRIMARY KEY,           -- signer || nonce
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    digest BLOB NOT NULL,           -- the receipt's
    validator TEXT NOT NULL,        -- the validator's peer id
    status TEXT NOT NULL,           -- its final verdict: stored, duplicate or refused
    reason TEXT,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (digest, validator)
);
"""


class LedgerError(NodeError):
    """The ledger could not be opened, read or written."""


@dataclass(frozen=True)
class ReceiptRow:
    """One stored receipt, as `dolphin node receipts --json` prints it."""

    request_id: str
    digest: str
    epoch: int
    model: str
    client: str | None
    client_key: str
    tokens_in: int
    tokens_out: int
    started_at_ms: int
    first_token_ms: int
    duration_ms: int
    finish_reason: str
    stored_at_ms: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EpochTotal:
    epoch: int
    receipts: int
    tokens_in: int
    tokens_out: int
    paid_receipts: int

    def to_json(self) -> dict:
        return asdict(self)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ledger:
    """An open ledger; use `open_ledger`. Every method is a trio coroutine."""

    def __init__(self, database: Database, epoch_ms: int) -> None:
        self._database = database
        self.path = database.path
        self.epoch_ms = epoch_ms
        self._pending_nonces: list[tuple[bytes, int]] = []
        self._lock = database.lock
        self._execute = database.execute
        self._commit = database.commit

    def epoch_of(self, at_ms: int) -> int:
        return at_ms // self.epoch_ms

    # ---- receipts ----
    async def store_receipt(self, verified: VerifiedReceipt) -> bool:
        """Commit a verified receipt; returns False if it was already stored. Durable when it returns."""
        r = verified.receipt
        async with self._database.lock:
            rows = await self._execute(
                "INSERT OR IGNORE INTO receipts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING digest",
                (
                    verified.digest,
                    r.request_id,
                    self.epoch_of(r.started_at_ms),
                    r.model,
                    r.client,
                    r.client_key,
                    r.tokens_in,
                    r.tokens_out,
                    r.started_at_ms,
                    r.first_token_ms,
                    r.duration_ms,
                    r.finish_reason,
                    verified.countersigned,
                    _now_ms(),
                ),
            )
            await self._database.commit()
        return bool(rows)

    async def receipts(self, epoch: int | None = None) -> list[ReceiptRow]:
        """Stored receipts, oldest first; only epoch `epoch` when given."""
        where, parameters = ("WHERE epoch = ?", (epoch,)) if epoch is not None else ("", ())
        rows = await self._database.execute(
            "SELECT request_id, digest, epoch, model, client, client_key, tokens_in, tokens_out,"
            " started_at_ms, first_token_ms, duration_ms, finish_reason, stored_at_ms"
            f" FROM receipts {where} ORDER BY started_at_ms, digest",
            parameters,
        )
        return [
            ReceiptRow(
                request_id=row[0].hex(),
                digest=row[1].hex(),
                epoch=row[2],
                model=row[3].hex(),
                client="0x" + row[4].hex() if row[4] is not None else None,
                client_key=row[5].hex(),
                tokens_in=row[6],
                tokens_out=row[7],
                started_at_ms=row[8],
                first_token_ms=row[9],
                duration_ms=row[10],
                finish_reason=row[11],
                stored_at_ms=row[12],
            )
            for row in rows
        ]

    async def countersigned(self, epoch: int | None = None) -> list[bytes]:
        """The evidence (of one epoch, or all): countersigned receipts as their clients sent them."""
        where, parameters = ("WHERE epoch = ?", (epoch,)) if epoch is not None else ("", ())
        rows = await self._database.execute(
            f"SELECT countersigned FROM receipts {where} ORDER BY digest", parameters
        )
        return [bytes(row[0]) for row in rows]

    async def epoch_totals(self) -> list[EpochTotal]:
        rows = await self._database.execute(
            "SELECT epoch, count(*), sum(tokens_in), sum(tokens_out), count(client)"
            " FROM receipts GROUP BY epoch ORDER BY epoch"
        )
        return [EpochTotal(*row) for row in rows]

    async def epoch_summary(self, epoch: int) -> dict[str, int]:
        """Receipts of one epoch in numbers: all of them, and the paid ones (those with a client wallet)."""
        rows = await self._database.execute(
            "SELECT count(*), coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0), count(client),"
            " coalesce(sum(CASE WHEN client IS NULL THEN 0 ELSE tokens_in + tokens_out END), 0)"
            " FROM receipts WHERE epoch = ?",
            (epoch,),
        )
        count, tokens_in, tokens_out, paid, paid_tokens = rows[0]
        return {
            "receipts": count,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "paid_receipts": paid,
            "paid_tokens": paid_tokens,
        }

    # ---- submissions to validators ----
    async def unsubmitted(
        self, validator: str, limit: int, *, since_ms: int = 0
    ) -> list[tuple[bytes, bytes]]:
        """(digest, countersigned receipt) of paid receipts started at or after `since_ms` that `validator`
        (a peer id) has no final verdict on, oldest first. Unpaid receipts are never submitted: they earn
        nothing, and validators refuse them; nor are old ones, whose epochs validators have closed."""
        rows = await self._database.execute(
            "SELECT r.digest, r.countersigned FROM receipts r LEFT JOIN submissions s"
            " ON s.digest = r.digest AND s.validator = ? WHERE r.started_at_ms >= ?"
            " AND r.client IS NOT NULL AND s.digest IS NULL ORDER BY r.started_at_ms, r.digest LIMIT ?",
            (validator, since_ms, limit),
        )
        return [(bytes(row[0]), bytes(row[1])) for row in rows]

    async def record_submissions(self, validator: str, verdicts: list[tuple[bytes, str, str | None]]) -> None:
        """Remember `validator`'s final verdicts, (digest, status, reason): those receipts are not sent to it
        again."""
        now = _now_ms()
        async with self._database.lock:
            await self._database.executemany(
                "INSERT OR REPLACE INTO submissions VALUES (?, ?, ?, ?, ?)",
                [(digest, validator, status, reason, now) for digest, status, reason in verdicts],
            )
            await self._database.commit()

    async def submission_totals(self) -> dict[str, dict[str, int]]:
        """Per validator peer id: how many receipts it stored, already had, or refused."""
        rows = await self._database.execute(
            "SELECT validator, status, count(*) FROM submissions GROUP BY validator, status"
        )
        totals: dict[str, dict[str, int]] = {}
        for validator, status, count in rows:
            totals.setdefault(validator, {})[status] = count
        return totals

    # ---- replay nonces ----
    def remember_nonce(self, key: bytes, expires_at_ms: int) -> None:
        """Queue a nonce for the next batch write (see the module docstring)."""
        self._pending_nonces.append((key, expires_at_ms))

    async def flush_nonces(self, now_ms: int | None = None) -> None:
        """Write queued nonces and forget expired ones."""
        pending, self._pending_nonces = self._pending_nonces, []
        now = _now_ms() if now_ms is None else now_ms
        async with self._lock:
            await self._database.executemany(
                "INSERT OR IGNORE INTO nonces VALUES (?, ?)", [p for p in pending if p[1] > now]
            )
            await self._execute("DELETE FROM nonces WHERE expires_at_ms <= ?", (now,))
            await self._database.commit()

    async def serve_nonce_writes(self, *, interval: float = NONCE_FLUSH_SECONDS) -> None:
        """Flush queued nonces every `interval` seconds; never returns (flushes once more when cancelled)."""
        try:
            while True:
                await trio.sleep(interval)
                if self._pending_nonces:
                    await self.flush_nonces()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush_nonces()

    async def unexpired_nonces(self, now_ms: int | None = None) -> list[tuple[bytes, int]]:
        now = _now_ms() if now_ms is None else now_ms
        rows = await self._database.execute(
            "SELECT key, expires_at_ms FROM nonces WHERE expires_at_ms > ?", (now,)
        )
        return [(bytes(row[0]), row[1]) for row in rows]


class PersistentReplayCache(ReplayCache):
    """A replay cache whose accepted nonces also go to the ledger, and which starts from the ledger's."""

    def __init__(self, ledger: Ledger, capacity: int = 200_000) -> None:
        super().__init__(capacity)
        self._ledger = ledger

    async def load(self, now_ms: int | None = None) -> int:
        """Remember the ledger's unexpired nonces; returns how many."""
        now = _now_ms() if now_ms is None else now_ms
        stored = await self._ledger.unexpired_nonces(now)
        for key, expires_at_ms in stored:
            with contextlib.suppress(ReplayError):  # only if the cache is smaller than the ledger's set
                ReplayCache.check_and_remember(self, key[:32], key[32:], expires_at_ms, now)
        return len(stored)

    def check_and_remember(self, signer: bytes, nonce: bytes, expires_at_ms: int, now_ms: int) -> None:
        super().check_and_remember(signer, nonce, expires_at_ms, now_ms)
        self._ledger.remember_nonce(signer + nonce, expires_at_ms)


@contextlib.asynccontextmanager
async def open_ledger(data_dir: Path, *, epoch_ms: int = DEFAULT_EPOCH_MS) -> AsyncIterator[Ledger]:
    """Open (creating) `data_dir/ledger.sqlite`. Must run inside `trio_asyncio.open_loop()`."""
    async with open_database(Path(data_dir) / LEDGER_FILE, _SCHEMA, error=LedgerError) as database:
        yield Ledger(database, epoch_ms)


async def read_ledger(data_dir: Path, read: Callable[[Ledger], Awaitable[T]]) -> T:
    """Open the ledger of `data_dir` on its own (outside a running daemon) and return `read(ledger)`."""
    async with trio_asyncio.open_loop(), open_ledger(data_dir) as ledger:
        return await read(ledger)
