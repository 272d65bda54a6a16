"""The settlement benchmark runs end to end on a small epoch and counts what it settles.

Real figures come from `python -m tests.bench settlement` (1M receipts, 100k wallets, 10% junk); this only
catches a benchmark that no longer builds valid receipts, no longer settles them, or whose validator
phases on Anvil (admission, sync, the daemon's close) no longer run. No times are asserted.
"""

import pytest

from tests.bench import bench_settlement

pytestmark = [pytest.mark.process, pytest.mark.chain]

SIZES = bench_settlement.Sizes(
    receipts=1_000, wallets=50, nodes=20, operators=5, admission=400, chunk=250, earlier_epochs=1
)


def test_settlement_benchmark_settles_a_small_epoch(tmp_path):
    figures = bench_settlement.run(tmp_path, SIZES)
    assert figures["receipts"] == 1_000 and figures["receipts_per_session"] == 18
    # Forged receipts never verify; of the rest one answer in a hundred was signed twice and counts once.
    assert figures["forged_receipts"] > 0 and figures["duplicates_dropped"] > 0
    assert figures["counted"] + figures["duplicates_dropped"] + figures["forged_receipts"] == 1_000
    # Receipts paid by a wallet without credit are not paid; every other one is.
    assert figures["unpaid"]["over the client's credit"] > 0
    assert figures["paid"] + sum(figures["unpaid"].values()) == figures["counted"]
    assert figures["root"].startswith("0x") and len(figures["root"]) == 66
    assert set(figures["phases_seconds"]) == {"verify", "dedup_and_price", "engine", "tree"}
    assert figures["floor"]["signatures"] == 2_000 and figures["peak_mib_main"] > 0

    admission = figures["admission"]
    assert admission["receipts"] == 400
    assert admission["stored"] + admission["verdicts"].get("duplicate", 0) + admission["refused"] == 400
    assert {"the paying wallet holds no credit", "the node is not registered on chain"} <= set(
        admission["verdicts"]
    )
    # A receipt stored and then replaced by the same answer's smaller digest is stored twice, held once.
    sync = figures["sync"]
    assert sync["same_commitment"] and sync["receipts"] == sync["receipts_held_by_the_first"]
    assert 0 <= admission["stored"] - sync["receipts"] <= 4  # 4 of the 400 are signed twice
    assert figures["credit_reads"]["wallets_funded"] == 50

    # The daemon's close on Anvil settles what settle_epoch settled offline, to the same root.
    close = figures["close"]
    assert (close["counted"], close["paid"], close["root"]) == (
        figures["counted"],
        figures["paid"],
        figures["root"],
    )
    assert close["debited_wallets"] == 50 and close["earlier_debit_batches_pending"] == 1
