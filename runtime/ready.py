"""`<data dir>/ready.json`: how scripts and tests learn that a daemon serves, and that a data dir is taken.

A daemon writes it (`runtime.files`' durability rule) only once it serves, with its pid and how to reach
it, and removes it when it stops, so a stale file never says a stopped daemon is up. Two daemons in one
data dir would overwrite each other's file, and the first to stop would delete the other's: a daemon
refuses a data dir whose ready.json names another live process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from runtime.files import write_atomically

__all__ = ["READY_FILE", "DataDirInUse", "check_data_dir_free", "write_ready_file"]

READY_FILE = "ready.json"


class DataDirInUse(Exception):
    """Another running daemon serves from this data dir (its ready.json names a live process)."""


def check_data_dir_free(data_dir: Path) -> None:
    """Refuse (DataDirInUse) a data dir whose ready.json names another live process; a ready.json left
    by a process that died is stale and ignored."""
    try:
        pid = json.loads((Path(data_dir) / READY_FILE).read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass  # alive, someone else's
    raise DataDirInUse(
        f"{data_dir} is in use by another running process (pid {pid}, see its {READY_FILE}): "
        "give this one its own --data-dir"
    )


def write_ready_file(data_dir: Path, document: dict) -> Path:
    """Write `document` (with this process's pid, which `check_data_dir_free` reads) as
    data_dir/ready.json; returns its path for the daemon to remove when it stops."""
    path = Path(data_dir) / READY_FILE
    content = {**document, "pid": os.getpid()}
    write_atomically(path, (json.dumps(content, indent=2, sort_keys=True) + "\n").encode())
    return path
