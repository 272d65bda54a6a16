"""`dolphin node` as an OS process: how the demo, tests and benchmarks run nodes."""

from __future__ import annotations

from pathlib import Path

from p2p.processes import LOCALHOST, DaemonProcess

NODE_PROGRAM = ("cli.main", "-v", "node")
"""The node's command line (`python -m` these, then the options)."""


def node_process(
    data_dir: Path, model_dir: Path, *args: str, listen: bool = True, program: tuple[str, ...] = NODE_PROGRAM
) -> DaemonProcess:
    """`dolphin node` serving `model_dir` from `data_dir`; `args` are more options (e.g. --bootstrap).
    `program` is the module and arguments before them (a benchmark's wrapped node, say)."""
    listen_args = ["--listen", LOCALHOST] if listen else ["--no-listen"]
    return DaemonProcess(
        data_dir,
        [
            "--model",
            str(model_dir),
            *listen_args,
            "--local-api",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "0.5",
            *args,
        ],
        program=program,
    )
