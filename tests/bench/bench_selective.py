"""selective: user requests a node that cheats only on its users serves before it is banned, by audit rate.

The scenario of `tests/validator/test_organic_audits.py` between separate processes (Anvil, a relay, the
dev chain's three validators with default settings, a node answering every challenge with the genuine
model and its users with another seed's — a perfect challenge detector) at the default audit rate (5%,
50% for suspect nodes) and two others. Reported per rate: the user requests served until all three
validators banned it, the answers shared, the failed checks of shared answers and of challenges, and the
validators that struck. One run per rate (each takes minutes here): a single draw, not an average.
Rates: $DOLPHIN_BENCH_SELECTIVE_RATES (comma-separated, default "0.05,0.02,0.2").
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import trio

from cli.demo import prepare_model
from p2p.processes import relay_process
from pool.audits import SharingSettings
from tests.validator.test_organic_audits import selective_cheater_run

MODELS_DIR = Path(".devdata/models")


def run(out: Path) -> dict:
    model_dir = prepare_model("tiny", MODELS_DIR)
    rates = [float(r) for r in os.environ.get("DOLPHIN_BENCH_SELECTIVE_RATES", "0.05,0.02,0.2").split(",")]
    rows = []
    for rate in rates:
        with tempfile.TemporaryDirectory() as tmp:
            relay = relay_process(Path(tmp) / "relay")
            try:
                trio.run(relay.wait_ready)
                sharing = SharingSettings(rate=rate)
                rows.append(trio.run(selective_cheater_run, Path(tmp), relay, model_dir, sharing))
            finally:
                relay.stop()
    return {"runs": rows}
