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
