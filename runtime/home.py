"""The one default home of everything Dolphin keeps on a machine: `~/.dolphin`.

Each daemon's data dir is a folder in it (`node`, `validator`, `gateway`), beside what `dolphin chain`
writes (ready.json, deployments, `keys/`) and the tokenizers clients fetch (`tokenizers/`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DOLPHIN_HOME", "chain_home"]

DOLPHIN_HOME = Path("~/.dolphin")
"""Unexpanded, as the config files and --help show it; settings expand it when read."""


def chain_home() -> Path:
    """Where `dolphin chain` keeps ready.json and deployments: $DOLPHIN_DATA_DIR, else ~/.dolphin."""
    return Path(os.environ.get("DOLPHIN_DATA_DIR") or DOLPHIN_HOME.expanduser())
