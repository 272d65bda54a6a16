"""The settlement benchmark runs end to end on a small epoch and counts what it settles.

Real figures come from `python -m tests.bench settlement` (1M receipts); this only catches a benchmark
that no longer builds valid receipts or no longer settles them. No times are asserted.
"""

import pytest

from tests.bench import bench_settlement

pytestmark = pytest.mark.process


def test_settlement_benchmark_settles_a_small_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_settlement, "RECEIPTS", 2_000)
    monkeypatch.setattr(bench_settlement, "CHUNK", 500)
    figures = bench_settlement.run(tmp_path)
    # One receipt in a hundred is the previous answer signed again: settlement pays it once. Every other
    # one is paid, whichever worker verified it for the floor before.
    assert figures["receipts"] == 2_000 and figures["duplicates_dropped"] == 20
    assert figures["counted"] == figures["paid"] == 1_980, figures["unpaid"]
    assert figures["root"].startswith("0x") and len(figures["root"]) == 66
    assert set(figures["phases_seconds"]) == {"verify", "dedup_and_price", "engine", "tree"}
    assert figures["floor"]["signatures"] == 4_000 and figures["peak_mib_main"] > 0
