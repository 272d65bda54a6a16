"""The WAN benchmark runs end to end on short paths: a relay, a relayed node, two cold asks; a gateway
in front of that node, dialled back or not.

Real figures come from `python -m tests.bench wan`; this only catches a harness that no longer starts
its peers and proxies, or whose asks no longer pass through them, and a hole punch that no longer
happens between processes. No times are asserted.
"""

import pytest

from tests.bench import bench_wan

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_the_wan_benchmark_asks_through_its_delay_proxies_and_a_gateway_gets_dialled_back(
    tmp_path, monkeypatch
):
    # Between separate processes (the node in its own network namespace where root allows): two cold asks
    # through the relay; then a gateway the node can reach is dialled back after its first, relayed
    # request, and one it cannot reach stays relayed.
    monkeypatch.setenv("WAN_DELAYS_MS", "0,100")
    monkeypatch.setenv("WAN_ASKS", "1")
    monkeypatch.setenv("WAN_PATHS", "relayed,punch")
    monkeypatch.setenv("WAN_PUNCH_DELAYS_MS", "100")
    monkeypatch.setenv("WAN_GATEWAY_REQUESTS", "2")
    figures = bench_wan.run(tmp_path)
    rows = figures["rows"]
    assert [(row["path"], row["delay_ms"], row["ok"]) for row in rows] == [
        ("relayed", 0, 1),
        ("relayed", 100, 1),
    ], [row["errors"] for row in rows]
    assert rows[1]["client_hop_round_trips"] > 1  # the ask's traffic went through the delayed proxy
    assert rows[1]["first_token_after_connect_ms"] is not None
    assert (tmp_path / "wan.md").read_text().count("| relayed |") == 2
    assert (tmp_path / "wan.png").stat().st_size > 0
    punched = figures["punch_rows"]
    assert [(row["mode"], row["ok"], row["punched"]) for row in punched] == [
        ("relayed only", 2, 0),
        ("hole punched", 2, 1),
    ], punched
    assert (tmp_path / "wan_punch.md").read_text().count("| hole punched |") == 1
