"""Log lines per hour of an idle node, validator and gateway, as operators run them.

A relay, one node (the tiny model), one validator (no chain) and one gateway run as `dolphin` processes
on 127.0.0.1 with nothing asked of them for IDLE_SECONDS (environment DOLPHIN_BENCH_IDLE_SECONDS, default
300); the lines each wrote after it was ready are counted and scaled to an hour. Each daemon runs twice
over: at the default verbosity (warnings) and at -v (info), the level the guides use. The validator
still challenges the node on its own schedule: that is its idle work, and what it logs about it counts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import trio

from node.models import build_tiny_model
from node.processes import node_process
from p2p.processes import relay_process
from p2p.testing import PeerProcess
from validator.daemon import write_wallet

IDLE_SECONDS = float(os.environ.get("DOLPHIN_BENCH_IDLE_SECONDS", "300"))


def _lines(process: PeerProcess) -> int:
    return len(process.log_tail(10**8).splitlines())


def _daemons(base: Path, model: Path, relay: str, verbosity: tuple[str, ...]) -> dict[str, PeerProcess]:
    tag = "v" if verbosity else "quiet"
    program = ("cli.main", *verbosity, "node")
    node = node_process(base / f"node-{tag}", model, "--bootstrap", relay, program=program)
    validator_dir = base / f"validator-{tag}"
    other = write_wallet(base / f"other-{tag}.key")
    write_wallet(validator_dir / "validator.key")
    (validator_dir / "validator.toml").write_text(f'validators = ["0x{other}"]\n')
    validator = PeerProcess(
        validator_dir,
        ["--reference", str(model), "--listen", "/ip4/127.0.0.1/tcp/0", "--metrics", "127.0.0.1:0",
         "--bootstrap", relay],
        program=("cli.main", *verbosity, "validator"),
    )  # fmt: skip
    gateway = PeerProcess(
        base / f"gateway-{tag}",
        ["--bootstrap", relay, "--http", "127.0.0.1:0", "--model", str(model)],
        program=("cli.main", *verbosity, "gateway"),
    )
    return {"node": node, "validator": validator, "gateway": gateway}


def run(out_dir: Path) -> dict:
    results: dict = {"idle_seconds": IDLE_SECONDS}
    with tempfile.TemporaryDirectory(prefix="dolphin-idle-logs-") as scratch:
        base = Path(scratch)
        model = base / "tiny"
        build_tiny_model(model)
        relay = relay_process(base / "relay")
        started: list[PeerProcess] = [relay]
        try:
            trio.run(relay.wait_ready, 60.0)
            daemons = {}
            for verbosity in ((), ("-v",)):
                for name, process in _daemons(base, model, relay.addr, verbosity).items():
                    started.append(process)
                    daemons[(name, "-v" if verbosity else "default")] = process
            at_ready = {}
            for key, process in daemons.items():
                trio.run(process.wait_ready, 240.0)
                at_ready[key] = _lines(process)
            time.sleep(IDLE_SECONDS)
            for (name, level), process in daemons.items():
                idle = _lines(process) - at_ready[(name, level)]
                results[f"{name}_{level}_lines_per_hour"] = round(idle * 3600 / IDLE_SECONDS)
                results[f"{name}_{level}_lines_at_start"] = at_ready[(name, level)]
                (out_dir / f"idle_logs_{name}_{level}.log").write_text(process.log_tail(200_000))
        finally:
            for process in reversed(started):
                with contextlib.suppress(Exception):
                    process.stop()
    return results
