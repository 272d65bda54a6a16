"""SQLite for the daemons' durable state: aiosqlite inside trio through trio-asyncio, WAL, synchronous=FULL.

`open_database(path, schema)` must run inside `trio_asyncio.open_loop()`. One transaction at a time runs
on the one connection (`Database.lock`); a committed transaction survives `kill -9` and a power cut, so
a daemon acknowledges only what `commit` returned for. Errors come out as the caller's error type.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aiosqlite
import trio
import trio_asyncio

__all__ = ["Database", "open_database"]


def _aio(function):
    return trio_asyncio.aio_as_trio(function)


class Database:
    """An open database; use `open_database`. Every method is a trio coroutine."""

    def __init__(self, connection: aiosqlite.Connection, path: Path, error: type[Exception]) -> None:
        self._connection = connection
        self.path = path
        self.error = error
        self.lock = trio.Lock()  # one transaction at a time on the one connection

    async def execute(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        """Run one statement; its rows (none for most writes)."""
        try:
            cursor = await _aio(self._connection.execute)(sql, parameters)
            rows = await _aio(cursor.fetchall)()
            await _aio(cursor.close)()
            return list(rows)
        except sqlite3.Error as exc:
            raise self.error(f"{self.path}: {exc}") from exc

    async def executemany(self, sql: str, rows: Iterable[tuple]) -> None:
        """Run one statement for each of `rows`."""
        try:
            await _aio(self._connection.executemany)(sql, list(rows))
        except sqlite3.Error as exc:
            raise self.error(f"{self.path}: {exc}") from exc

    async def commit(self) -> None:
        """Make the transaction durable."""
        try:
            await _aio(self._connection.commit)()
        except sqlite3.Error as exc:
            raise self.error(f"{self.path}: commit failed: {exc}") from exc


@contextlib.asynccontextmanager
async def open_database(path: Path, schema: str, *, error: type[Exception]) -> AsyncIterator[Database]:
    """Open (creating) the database at `path` with `schema` (idempotent statements); `error` wraps
    every sqlite3 failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = await _aio(aiosqlite.connect)(str(path))
        connection.row_factory = sqlite3.Row
        await _aio(connection.execute)("PRAGMA journal_mode=WAL")
        await _aio(connection.execute)("PRAGMA synchronous=FULL")
        await _aio(connection.executescript)(schema)
        await _aio(connection.commit)()
    except sqlite3.Error as exc:
        raise error(f"cannot open the database {path}: {exc}") from exc
    try:
        yield Database(connection, path, error)
    finally:
        with trio.CancelScope(shield=True):
            await _aio(connection.close)()
