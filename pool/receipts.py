"""The gateway's book of the answers it served: countersigned receipts and users' reports, in SQLite.

Each answer's receipts are filed under the answer's id (what the API user saw, e.g. "chatcmpl-…") and
each node request's own id, so a user can report a bad answer by either. Nothing here holds a prompt or
an answer: receipts carry hashes and counts only.

A report is committed first and published after (`pending_reports` / `mark_published`), so one made
while no validator is connected goes out once one is.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pool.errors import PoolError
from runtime.sqlite import Database, open_database

__all__ = ["RECEIPTS_FILE", "ReceiptBook", "ServedReceipt", "StoreError", "open_receipt_book"]

RECEIPTS_FILE = "gateway.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    request_id BLOB PRIMARY KEY,    -- the node request's id (InferenceRequest.request_id)
    answer_id TEXT NOT NULL,        -- the id the API user saw
    peer_id TEXT NOT NULL,
    node_key BLOB NOT NULL,
    model BLOB NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    countersigned BLOB NOT NULL,    -- the evidence
    stored_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_by_answer ON receipts (answer_id);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    request_id BLOB NOT NULL,
    envelope BLOB NOT NULL,         -- the signed UserReport
    created_at_ms INTEGER NOT NULL,
    published_at_ms INTEGER
);
"""


class StoreError(PoolError):
    """The gateway's receipt book could not be opened, read or written."""


@dataclass(frozen=True)
class ServedReceipt:
    request_id: bytes
    answer_id: str
    peer_id: str
    node_key: bytes
    model: bytes
    tokens_in: int
    tokens_out: int
    countersigned: bytes


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReceiptBook:
    """An open book; use `open_receipt_book`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, receipts: list[ServedReceipt]) -> None:
        """File an answer's receipts (durable when this returns)."""
        async with self._database.lock:
            await self._database.executemany(
                "INSERT OR IGNORE INTO receipts VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.request_id,
                        r.answer_id,
                        r.peer_id,
                        r.node_key,
                        r.model,
                        r.tokens_in,
                        r.tokens_out,
                        r.countersigned,
                        _now_ms(),
                    )
                    for r in receipts
                ],
            )
            await self._database.commit()

    async def find(self, answer_or_request_id: str) -> list[ServedReceipt]:
        """The receipts of an answer (by the id the API user saw) or of one node request (its hex id)."""
        try:
            request_id = bytes.fromhex(answer_or_request_id)
        except ValueError:
            request_id = b""
        rows = await self._database.execute(
            "SELECT * FROM receipts WHERE answer_id = ? OR request_id = ? ORDER BY stored_at_ms",
            (answer_or_request_id, request_id),
        )
        return [
            ServedReceipt(
                request_id=bytes(row["request_id"]),
                answer_id=row["answer_id"],
                peer_id=row["peer_id"],
                node_key=bytes(row["node_key"]),
                model=bytes(row["model"]),
                tokens_in=row["tokens_in"],
                tokens_out=row["tokens_out"],
                countersigned=bytes(row["countersigned"]),
            )
            for row in rows
        ]

    async def add_report(self, request_id: bytes, envelope: bytes) -> int:
        """File a signed report to publish; its id."""
        async with self._database.lock:
            rows = await self._database.execute(
                "INSERT INTO reports (request_id, envelope, created_at_ms) VALUES (?, ?, ?) RETURNING id",
                (request_id, envelope, _now_ms()),
            )
            await self._database.commit()
        return rows[0][0]

    async def pending_reports(self) -> list[tuple[int, bytes]]:
        rows = await self._database.execute(
            "SELECT id, envelope FROM reports WHERE published_at_ms IS NULL ORDER BY id"
        )
        return [(row[0], bytes(row[1])) for row in rows]

    async def mark_published(self, report_id: int) -> None:
        async with self._database.lock:
            await self._database.execute(
                "UPDATE reports SET published_at_ms = ? WHERE id = ?", (_now_ms(), report_id)
            )
            await self._database.commit()


@contextlib.asynccontextmanager
async def open_receipt_book(data_dir: Path) -> AsyncIterator[ReceiptBook]:
    """Open (creating) <data_dir>/gateway.sqlite. Must run inside `trio_asyncio.open_loop()`."""
    async with open_database(Path(data_dir) / RECEIPTS_FILE, _SCHEMA, error=StoreError) as database:
        yield ReceiptBook(database)
