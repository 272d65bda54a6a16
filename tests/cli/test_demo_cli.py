"""`dolphin demo` end to end on the tiny model: chain, stake, encrypted inference over libp2p, settlement."""

import re

import pytest
from click.testing import CliRunner

from cli.main import main


@pytest.mark.integration
@pytest.mark.slow
def test_demo_answers_an_encrypted_prompt_and_settles_the_epoch(tmp_path):
    result = CliRunner().invoke(
        main, ["demo", "--model", "tiny", "--max-tokens", "8", "--work-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    output = result.output
    assert re.search(r"chain 31337 at http://127\.0\.0\.1:\d+; \d+ contracts", output)
    assert "node (no listen addr)" in output and "/p2p-circuit/p2p/" in output  # reachable via the relay
    assert "(DHT + verified heartbeat)" in output
    assert "answer: 8 tokens" in output
    assert "3 validators signed" in output
    # The user's credit pays for the answer; half its value in POD is emitted, all to the only operator.
    revenue = re.search(r"revenue ([0-9.]+) lUSD; base rewards emitted ([0-9.]+) POD", output)
    assert revenue and float(revenue[1]) > 0
    assert f"signed the debits: {revenue[1]} lUSD to the buyback" in output
    assert re.search(rf"operator claimed {re.escape(revenue[2])} POD \(balance 980,000 -> 980,000", output)
    assert "done" in output
    # Model folders persist for the next run; the run's peers and chain do not.
    assert (tmp_path / "models" / "tiny" / "dolphin-manifest.json").is_file()
    assert not list(tmp_path.glob("run-*"))
