"""The node's X25519 keys: created once with mode 0600, kept across restarts, rotated with a grace period."""

import stat

import pytest

from node.errors import NodeError
from node.keys import ENCRYPTION_KEYS_FILE, KeyRing

pytestmark = pytest.mark.unit

HOUR_MS = 3600 * 1000
T0 = 1_800_000_000_000


def test_keys_are_created_once_private_and_survive_a_restart(tmp_path):
    first = KeyRing.open(tmp_path, rotation_s=86400, grace_s=600, now_ms=T0)
    path = tmp_path / ENCRYPTION_KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = KeyRing.open(tmp_path, rotation_s=86400, grace_s=600, now_ms=T0 + HOUR_MS)
    assert again.current.public_key == first.current.public_key
    assert [k.public_key for k in again.accepted(T0 + HOUR_MS)] == [first.current.public_key]


def test_rotation_replaces_the_key_and_accepts_the_previous_one_for_the_grace_period(tmp_path):
    ring = KeyRing.open(tmp_path, rotation_s=3600, grace_s=600, now_ms=T0)
    old = ring.current.public_key
    assert not ring.rotate_if_due(T0 + HOUR_MS - 1)
    assert ring.due_in(T0 + HOUR_MS - 1000) == pytest.approx(1.0)
    assert ring.rotate_if_due(T0 + HOUR_MS)
    new = ring.current.public_key
    assert new != old
    assert [k.public_key for k in ring.accepted(T0 + HOUR_MS + 600_000)] == [new, old]
    assert [k.public_key for k in ring.accepted(T0 + HOUR_MS + 600_001)] == [new]
    # A restart keeps both, and a node that was down past its rotation time rotates on start.
    restarted = KeyRing.open(tmp_path, rotation_s=3600, grace_s=600, now_ms=T0 + HOUR_MS + 1)
    assert [k.public_key for k in restarted.accepted(T0 + HOUR_MS + 1)] == [new, old]
    late = KeyRing.open(tmp_path, rotation_s=3600, grace_s=600, now_ms=T0 + 5 * HOUR_MS)
    assert late.current.public_key not in (new, old)
    assert stat.S_IMODE((tmp_path / ENCRYPTION_KEYS_FILE).stat().st_mode) == 0o600


def test_a_damaged_key_file_is_refused_not_replaced(tmp_path):
    (tmp_path / ENCRYPTION_KEYS_FILE).write_text("{not json")
    with pytest.raises(NodeError, match="move it away"):
        KeyRing.open(tmp_path, rotation_s=3600, grace_s=600)
    assert (tmp_path / ENCRYPTION_KEYS_FILE).read_text() == "{not json"
