"""The protocols benchmark runs, and the prompt path stays within a generous multiple of bare libsodium.

Real figures come from `make bench`; this only catches a benchmark that broke or a gross regression
(ratios measured in the same run, never absolute times: the machines are shared and noisy).
"""

import json

import pytest

from tests.bench import bench_protocols

pytestmark = pytest.mark.unit


def test_benchmark_runs_and_reports_every_path(tmp_path):
    figures = bench_protocols.measure(iterations=200, repeats=3)
    assert set(figures) == {
        "prompt_send",
        "prompt_receive",
        "chunk_send",
        "chunk_receive",
        "signed_chunk_send",
        "signed_chunk_receive",
        "receipt",
    }
    for name, row in figures.items():
        assert row["ours_per_s"] > 0 and row["bare_per_s"] > 0, name
    # The 2 KB prompt is dominated by the key exchange and signature: the wire format must not be.
    assert figures["prompt_send"]["slowdown"] < 10
    assert figures["prompt_receive"]["slowdown"] < 10
    json.dumps(figures)


def test_privacy_costs_are_reported_next_to_todays():
    rows = bench_protocols.measure_streaming(tokens=60, repeats=1)
    assert {"today", "padded", "batched_50tps_50ms"} <= set(rows)
    today, padded, batched = rows["today"], rows["padded"], rows["batched_50tps_50ms"]
    assert padded["frames_per_token"] == today["frames_per_token"] == 1
    assert padded["bytes_per_token"] > today["bytes_per_token"]  # padding costs bytes...
    assert batched["bytes_per_token"] < padded["bytes_per_token"]  # ...which batching wins back
    assert batched["ttft_added_ms"] == 0 and 0 < batched["mean_delay_ms"] <= batched["max_delay_ms"] <= 50
    sizes = bench_protocols.measure_sizes()
    assert len(set(sizes["chunk_bytes_by_token_chars"]["now"].values())) == 1
    assert len(set(sizes["chunk_bytes_by_token_chars"]["today"].values())) > 1
    peak = bench_protocols.measure_decode_peak()
    assert peak["with_budget"] * 10 < peak["without_budget"]
    json.dumps([rows, sizes, peak])
