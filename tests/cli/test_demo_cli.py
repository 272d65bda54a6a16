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
    # The only worker earns the whole 1,000 POD emission and claims it.
    assert re.search(r"operator claimed 1,000 POD \(balance 980,000 -> 981,000 POD\)", output)
    assert "done" in output
    # Model folders persist for the next run; the run's peers and chain do not.
    assert (tmp_path / "models" / "tiny" / "dolphin-manifest.json").is_file()
    assert not list(tmp_path.glob("run-*"))
