"""`dolphin validator` as an OS process: how the demo, tests and benchmarks run validators."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2p.processes import LOCALHOST, DaemonProcess
from validator.config import CONFIG_FILE, ValidatorConfig, render_config


def validator_process(
    data_dir: Path, reference_dir: Path, *args: str, settings: Mapping[str, Any] | None = None
) -> DaemonProcess:
    """`dolphin validator` checking `reference_dir`'s pool from `data_dir`; `args` are more options.
    `settings` are written to its config file (<data dir>/validator.toml), as an operator would."""
    if settings:
        config = ValidatorConfig(data_dir=data_dir, reference=reference_dir, **settings)
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        (Path(data_dir) / CONFIG_FILE).write_text(render_config(config))
    return DaemonProcess(
        data_dir,
        ["--reference", str(reference_dir), "--listen", LOCALHOST, "--metrics", "127.0.0.1:0", *args],
        program=("cli.main", "-v", "validator"),
    )
