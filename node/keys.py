"""The node's X25519 encryption keys: persisted in the data dir, rotated on a timer.

Clients seal requests to the key in the node's latest heartbeat. Anyone who later steals that key could
read requests sealed to it, so the node replaces it every `rotation` seconds (protocols/e2e.py); the
previous key keeps opening requests for `grace` seconds after it was retired (one request lifetime plus
clock skew), because a client may have sealed to it just before it heard the new heartbeat.

The file `encryption-keys.json` (mode 0600) holds the current key and, while it is still accepted, the
previous one, with the times they were made and retired. It is created once and survives restarts, so a
restarted node opens requests sealed to the key its last heartbeat announced.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from node.errors import NodeError
from protocols.keys import EncryptionKeyPair
from runtime.files import write_atomically

__all__ = ["ENCRYPTION_KEYS_FILE", "KeyRing"]

ENCRYPTION_KEYS_FILE = "encryption-keys.json"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _Entry:
    keys: EncryptionKeyPair
    created_at_ms: int
    retired_at_ms: int | None = None

    def to_json(self) -> dict:
        return {
            "secret_key": self.keys.secret_key.hex(),
            "public_key": self.keys.public_key.hex(),
            "created_at_ms": self.created_at_ms,
            "retired_at_ms": self.retired_at_ms,
        }

    @classmethod
    def from_json(cls, data: dict) -> _Entry:
        return cls(
            EncryptionKeyPair(bytes.fromhex(data["secret_key"])),
            int(data["created_at_ms"]),
            None if data.get("retired_at_ms") is None else int(data["retired_at_ms"]),
        )


class KeyRing:
    """The current encryption key and the previous one while it is still accepted."""

    def __init__(self, path: Path, *, rotation_s: float, grace_s: float) -> None:
        self.path = path
        self.rotation_ms = int(rotation_s * 1000)
        self.grace_ms = int(grace_s * 1000)
        self._current: _Entry
        self._previous: _Entry | None = None

    @classmethod
    def open(cls, data_dir: Path, *, rotation_s: float, grace_s: float, now_ms: int | None = None) -> KeyRing:
        """Load the keys from `data_dir` (creating them on first use) and rotate if the current one is due.

        Raises NodeError when the file exists but cannot be read (it is never silently replaced: clients
        may still be sealing to it).
        """
        ring = cls(Path(data_dir) / ENCRYPTION_KEYS_FILE, rotation_s=rotation_s, grace_s=grace_s)
        now = _now_ms() if now_ms is None else now_ms
        if ring.path.exists():
            try:
                data = json.loads(ring.path.read_text())
                ring._current = _Entry.from_json(data["current"])
                ring._previous = _Entry.from_json(data["previous"]) if data.get("previous") else None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise NodeError(f"{ring.path} is unreadable ({exc!r}); move it away to start fresh") from exc
        else:
            ring._current = _Entry(EncryptionKeyPair.generate(), now)
            ring._save()
        ring.rotate_if_due(now)
        return ring

    @property
    def current(self) -> EncryptionKeyPair:
        return self._current.keys

    def accepted(self, now_ms: int | None = None) -> list[EncryptionKeyPair]:
        """Keys a request may be sealed to right now, current first."""
        now = _now_ms() if now_ms is None else now_ms
        previous = self._previous
        retired = previous.retired_at_ms if previous is not None else None
        if previous is not None and retired is not None and now <= retired + self.grace_ms:
            return [self._current.keys, previous.keys]
        return [self._current.keys]

    def due_in(self, now_ms: int | None = None) -> float:
        """Seconds until the current key is due for rotation (0 if it is due)."""
        now = _now_ms() if now_ms is None else now_ms
        return max(0.0, (self._current.created_at_ms + self.rotation_ms - now) / 1000)

    def rotate_if_due(self, now_ms: int | None = None) -> bool:
        """Replace the current key with a fresh one if it is due; the old one becomes the previous key."""
        now = _now_ms() if now_ms is None else now_ms
        if self.due_in(now) > 0:
            return False
        self._previous = _Entry(self._current.keys, self._current.created_at_ms, now)
        self._current = _Entry(EncryptionKeyPair.generate(), now)
        self._save()
        return True

    def _save(self) -> None:
        document = {
            "current": self._current.to_json(),
            "previous": self._previous.to_json() if self._previous else None,
        }
        write_atomically(self.path, json.dumps(document, indent=2).encode() + b"\n", mode=0o600)
