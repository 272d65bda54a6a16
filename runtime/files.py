"""Files a daemon or command leaves on disk: written whole or not at all, data dirs the owner's only.

One durability rule for every file we write (keys, bindings, ready.json, deployments, rewards trees,
benchmark caches): a temporary file beside the target, fsynced, renamed over the target, and the folder
fsynced, so a reader never sees half a file and a crash or power cut leaves the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["make_private_dir", "write_atomically"]


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` under the module's durability rule.

    The temporary file is created with `mode` from the start, so a secret is never readable by others,
    not even for a moment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the rename lives in the folder's entry, not in the file)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed and make it 0700: a data dir holds keys, receipts and
    state that no other local user may read."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
