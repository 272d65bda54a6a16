"""SQLite for daemons: aiosqlite inside trio (through trio-asyncio), WAL, committed before acknowledged.

The node's ledger and the validator's state both keep what must survive `kill -9` here. `open_database`
opens (creating) a file in WAL mode with `synchronous=FULL` and applies a schema of CREATE ... IF NOT
EXISTS statements; a `Database` runs one statement or transaction at a time on its one connection and
turns sqlite3 errors into the caller's error type, naming the file. Must run inside
`trio_asyncio.open_loop()`.
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


def _aio(function):  # type: ignore[no-untyped-def]
    return trio_asyncio.aio_as_trio(function)


class Database:
    """An open database; use `open_database`. Every method is a trio coroutine."""

    def __init__(self, connection: aiosqlite.Connection, path: Path, error: type[Exception]) -> None:
        self._connection = connection
        self.path = path
        self._error = error
        self.lock = trio.Lock()  # one transaction at a time on the one connection

    async def execute(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        """Run one statement and return its rows (not committed: see `commit`)."""
        try:
            cursor = await _aio(self._connection.execute)(sql, parameters)
            rows = await _aio(cursor.fetchall)()
            await _aio(cursor.close)()
            return list(rows)
        except sqlite3.Error as exc:
            raise self._error(f"{self.path}: {exc}") from exc

    async def executemany(self, sql: str, rows: Iterable[tuple]) -> None:
        try:
            await _aio(self._connection.executemany)(sql, list(rows))
        except sqlite3.Error as exc:
            raise self._error(f"{self.path}: {exc}") from exc

    async def commit(self) -> None:
        try:
            await _aio(self._connection.commit)()
        except sqlite3.Error as exc:
            raise self._error(f"{self.path}: commit failed: {exc}") from exc


@contextlib.asynccontextmanager
async def open_database(path: Path, schema: str, error: type[Exception]) -> AsyncIterator[Database]:
    """Open (creating) the SQLite file `path` with `schema` applied; errors are raised as `error`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = await _aio(aiosqlite.connect)(str(path))
        await _aio(connection.execute)("PRAGMA journal_mode=WAL")
        await _aio(connection.execute)("PRAGMA synchronous=FULL")
        await _aio(connection.executescript)(schema)
        await _aio(connection.commit)()
    except sqlite3.Error as exc:
        raise error(f"cannot open {path}: {exc}") from exc
    try:
        yield Database(connection, path, error)
    finally:
        with trio.CancelScope(shield=True):
            await _aio(connection.close)()
