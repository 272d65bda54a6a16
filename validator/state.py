"""The validator's state in SQLite (`<data dir>/validator.sqlite`, `runtime.sqlite`): what outlives a crash.

- `checks`: one row per sampled answer checked (node, epoch, passed, the failed checks): the counts a
  NodeStanding publishes, and the audit trail. Prompts and answers are not stored: only the evidence of
  a strike is, and that is the validator's own challenge, never a user's words.
- `suspicion`: each node's suspicion (log odds and counts), so a restart does not forget who looked bad.
- `strikes`: strike reports with their evidence (own and others'), whether re-verified and counted.
- `bans`: ban notices as received (signed envelopes).
- `user_reports`: users' reports (signed envelopes: a receipt, a reason, a reward address; no content).
- `decisions`: StrikeDecisionSignatures gathered, and `slashes` submitted.
- `rewards`: **the per-epoch table the epoch settlement consumes**: rewards the node rewards pool owes for
  bans (`strikes.RewardRow`): epoch, account (20-byte address), role ("validator" or "user"), amount in
  POD wei (decimal text), bonded (1: pay as bonded stake), the ban's evidence hash and the node's key. One
  row per (evidence hash, account, role); `dolphin validator rewards --epoch N --json` prints them.

Every write is committed before the method returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio_asyncio

from protocols.messages import StrikeDecisionSignature, StrikeReport
from protocols.schema import decode_message, encode_message
from runtime.sqlite import Database, open_database
from validator.errors import ValidatorError
from validator.strikes import RewardRow
from validator.suspicion import Suspicion, SuspicionModel

__all__ = ["STATE_FILE", "StateError", "ValidatorState", "open_state", "read_state"]

STATE_FILE = "validator.sqlite"
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY,
    node_key BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    checked_at_ms INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    failed TEXT NOT NULL            -- names of the failed checks, comma-separated
);
CREATE INDEX IF NOT EXISTS checks_by_node ON checks (node_key, epoch);
CREATE TABLE IF NOT EXISTS suspicion (
    node_key BLOB PRIMARY KEY,
    log_odds REAL NOT NULL,
    checks INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    reports INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS strikes (
    signature BLOB PRIMARY KEY,
    node_key BLOB NOT NULL,
    validator BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    reason TEXT NOT NULL,           -- the reason it counts for (our re-check's)
    own INTEGER NOT NULL,
    counted INTEGER NOT NULL,
    report BLOB NOT NULL,           -- the StrikeReport with its evidence
    received_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bans (
    node_key BLOB PRIMARY KEY,
    envelope BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS user_reports (
    digest BLOB PRIMARY KEY,        -- sha256 of the envelope
    node_key BLOB NOT NULL,
    envelope BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    evidence_hash BLOB NOT NULL,
    validator BLOB NOT NULL,
    signature BLOB NOT NULL,        -- the StrikeDecisionSignature message
    PRIMARY KEY (evidence_hash, validator, signature)
);
CREATE TABLE IF NOT EXISTS slashes (
    evidence_hash BLOB NOT NULL,
    offender BLOB NOT NULL,
    transaction_hash TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (evidence_hash, offender)
);
CREATE TABLE IF NOT EXISTS rewards (
    epoch INTEGER NOT NULL,
    account BLOB NOT NULL,
    role TEXT NOT NULL,
    amount TEXT NOT NULL,           -- POD wei, decimal
    bonded INTEGER NOT NULL,
    evidence_hash BLOB NOT NULL,
    node_key BLOB NOT NULL,
    PRIMARY KEY (evidence_hash, account, role)
);
CREATE INDEX IF NOT EXISTS rewards_by_epoch ON rewards (epoch);
"""


class StateError(ValidatorError):
    """The validator's state could not be opened, read or written."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ValidatorState:
    """The open state; use `open_state`. Every method is a trio coroutine."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self.path = database.path

    async def _write(self, sql: str, parameters: tuple = ()) -> list:
        async with self._db.lock:
            rows = await self._db.execute(sql, parameters)
            await self._db.commit()
        return rows

    # ---- checks and suspicion ----
    async def record_check(
        self, node_key: bytes, epoch: int, passed: bool, failed: list[str], suspicion: Suspicion
    ) -> None:
        """One checked answer and the node's suspicion after it, in one transaction."""
        async with self._db.lock:
            await self._db.execute(
                "INSERT INTO checks (node_key, epoch, checked_at_ms, passed, failed) VALUES (?,?,?,?,?)",
                (node_key, epoch, _now_ms(), int(passed), ",".join(failed)),
            )
            await self._save_suspicion(node_key, suspicion)
            await self._db.commit()

    async def save_suspicion(self, node_key: bytes, suspicion: Suspicion) -> None:
        async with self._db.lock:
            await self._save_suspicion(node_key, suspicion)
            await self._db.commit()

    async def _save_suspicion(self, node_key: bytes, suspicion: Suspicion) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO suspicion VALUES (?,?,?,?,?)",
            (node_key, suspicion.log_odds, suspicion.checks, suspicion.failures, suspicion.reports),
        )

    async def suspicions(self, model: SuspicionModel) -> dict[bytes, Suspicion]:
        rows = await self._db.execute("SELECT node_key, log_odds, checks, failures, reports FROM suspicion")
        return {bytes(r[0]): Suspicion(model, r[1], r[2], r[3], r[4]) for r in rows}

    async def check_counts(self, node_key: bytes, epoch: int) -> tuple[int, int]:
        """(answers checked, answers failed) of a node in `epoch`."""
        rows = await self._db.execute(
            "SELECT count(*), coalesce(sum(1 - passed), 0) FROM checks WHERE node_key = ? AND epoch = ?",
            (node_key, epoch),
        )
        return rows[0][0], rows[0][1]

    async def check_totals(self) -> dict[str, int]:
        rows = await self._db.execute("SELECT count(*), coalesce(sum(1 - passed), 0) FROM checks")
        return {"checks": rows[0][0], "failed": rows[0][1]}

    # ---- strikes, bans, user reports ----
    async def store_strike(
        self, strike: StrikeReport, *, own: bool, counted: bool, reason: str | None = None
    ) -> None:
        """Keep a strike with its evidence; `reason`: what our re-check found (default: the strike's)."""
        await self._write(
            "INSERT OR REPLACE INTO strikes VALUES (?,?,?,?,?,?,?,?,?)",
            (
                strike.signature,
                strike.node_key,
                strike.validator,
                strike.epoch,
                reason or strike.reason,
                int(own),
                int(counted),
                encode_message(strike),
                _now_ms(),
            ),
        )

    async def strikes(self) -> list[tuple[StrikeReport, bool, bool, str]]:
        """(strike with its evidence, own, counted, the reason it counts for), oldest first."""
        rows = await self._db.execute(
            "SELECT report, own, counted, reason FROM strikes ORDER BY received_at_ms, signature"
        )
        return [(decode_message(bytes(r[0]), StrikeReport), bool(r[1]), bool(r[2]), r[3]) for r in rows]

    async def store_ban(self, node_key: bytes, envelope: bytes, *, replace: bool = False) -> bool:
        """Keep a ban notice's envelope; False if the node was banned already (unless `replace`)."""
        verb = "REPLACE" if replace else "IGNORE"
        rows = await self._write(
            f"INSERT OR {verb} INTO bans VALUES (?,?,?) RETURNING node_key", (node_key, envelope, _now_ms())
        )
        return bool(rows)

    async def bans(self) -> list[bytes]:
        rows = await self._db.execute("SELECT envelope FROM bans ORDER BY received_at_ms")
        return [bytes(r[0]) for r in rows]

    async def store_user_report(self, digest: bytes, node_key: bytes, envelope: bytes) -> bool:
        rows = await self._write(
            "INSERT OR IGNORE INTO user_reports VALUES (?,?,?,?) RETURNING digest",
            (digest, node_key, envelope, _now_ms()),
        )
        return bool(rows)

    async def user_reports(self, node_key: bytes) -> list[bytes]:
        """A node's user report envelopes, oldest first."""
        rows = await self._db.execute(
            "SELECT envelope FROM user_reports WHERE node_key = ? ORDER BY received_at_ms, digest",
            (node_key,),
        )
        return [bytes(r[0]) for r in rows]

    # ---- decisions and slashes ----
    async def store_decision_signature(self, signature: StrikeDecisionSignature) -> None:
        await self._write(
            "INSERT OR IGNORE INTO decisions VALUES (?,?,?)",
            (signature.evidence_hash, signature.validator, encode_message(signature)),
        )

    async def decision_signatures(self) -> list[StrikeDecisionSignature]:
        rows = await self._db.execute("SELECT signature FROM decisions")
        return [decode_message(bytes(r[0]), StrikeDecisionSignature) for r in rows]

    async def record_slash(self, evidence_hash: bytes, offender: bytes, transaction_hash: str) -> None:
        await self._write(
            "INSERT OR IGNORE INTO slashes VALUES (?,?,?,?)",
            (evidence_hash, offender, transaction_hash, _now_ms()),
        )

    async def slashed(self) -> set[tuple[bytes, bytes]]:
        rows = await self._db.execute("SELECT evidence_hash, offender FROM slashes")
        return {(bytes(r[0]), bytes(r[1])) for r in rows}

    # ---- rewards for the settlement ----
    async def store_rewards(self, rows: list[RewardRow]) -> None:
        async with self._db.lock:
            await self._db.executemany(
                "INSERT OR IGNORE INTO rewards VALUES (?,?,?,?,?,?,?)",
                [
                    (r.epoch, r.account, r.role, str(r.amount), int(r.bonded), r.evidence_hash, r.node_key)
                    for r in rows
                ],
            )
            await self._db.commit()

    async def rewards(self, epoch: int | None = None) -> list[RewardRow]:
        where, parameters = ("WHERE epoch = ?", (epoch,)) if epoch is not None else ("", ())
        rows = await self._db.execute(
            f"SELECT epoch, account, role, amount, bonded, evidence_hash, node_key FROM rewards {where}"
            " ORDER BY epoch, evidence_hash, role, account",
            parameters,
        )
        return [
            RewardRow(r[0], bytes(r[1]), r[2], int(r[3]), bool(r[4]), bytes(r[5]), bytes(r[6])) for r in rows
        ]


@contextlib.asynccontextmanager
async def open_state(data_dir: Path) -> AsyncIterator[ValidatorState]:
    """Open (creating) `data_dir/validator.sqlite`. Must run inside `trio_asyncio.open_loop()`."""
    async with open_database(Path(data_dir) / STATE_FILE, _SCHEMA, error=StateError) as database:
        yield ValidatorState(database)


async def read_state(data_dir: Path, read: Callable[[ValidatorState], Awaitable[T]]) -> T:
    """Open the state of `data_dir` on its own (outside a running daemon) and return `read(state)`."""
    if not (Path(data_dir) / STATE_FILE).is_file():
        raise StateError(f"no validator state in {data_dir} (run `dolphin validator` there first)")
    async with trio_asyncio.open_loop(), open_state(data_dir) as state:
        return await read(state)
