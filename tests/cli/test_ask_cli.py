"""`dolphin ask` as a user runs it: one JSON object with the issue's fields, streaming to stdout, and
clear errors for an unknown model or an unreachable bootstrap peer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from node.models import load_manifest
from node.testing import running_pool

ROOT = Path(__file__).resolve().parents[2]


def _ask(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "ask", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.mark.unit
def test_help_names_the_options():
    output = CliRunner().invoke(main, ["ask", "--help"]).output
    for word in ("--bootstrap", "--model", "--max-tokens", "--json", "PROMPT", "--nodes", "--key-file"):
        assert word in output


@pytest.mark.process
@pytest.mark.slow
def test_ask_by_name_id_and_folder_through_a_relay(tmp_path, tiny_model_dir):
    manifest = load_manifest(tiny_model_dir)
    with running_pool(tmp_path, tiny_model_dir, direct=0, hidden=1) as (relay, (node,)):
        result = _ask(
            "--bootstrap", relay.addr, "--model", manifest.name, "--max-tokens", "6", "--json", "Hello?"
        )
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)  # one JSON object, nothing else on stdout
        assert answer["node"] == node.peer_id and len(bytes.fromhex(answer["request_id"])) == 16
        assert 1 <= answer["tokens_out"] <= 6 and answer["tokens_in"] > 3
        assert answer["finish_reason"] in ("stop", "length") and answer["receipt_stored"] is True
        assert answer["model"] == manifest.model_id().hex() and isinstance(answer["text"], str)
        streamed = _ask("--bootstrap", relay.addr, "--model", str(tiny_model_dir), "--max-tokens", "6", "Hi")
        assert streamed.returncode == 0 and streamed.stdout.endswith("\n"), streamed.stderr
        by_id = _ask(
            "--bootstrap", relay.addr, "-m", manifest.model_id().hex(), "--max-tokens", "2", "--json", "-"
        )
        assert by_id.returncode == 0 and json.loads(by_id.stdout)["tokens_out"] <= 2
        unknown = _ask("--bootstrap", relay.addr, "--model", "no-such-model", "--timeout", "60", "Hi")
        assert unknown.returncode == 1 and "no node serves a model called 'no-such-model'" in unknown.stderr
        assert "Traceback" not in unknown.stderr


@pytest.mark.process
def test_an_unreachable_bootstrap_peer_is_named_at_once(tmp_path):
    # Port 9 (discard) has no listener here.
    nobody = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWJhtwmfN4WWzgN4vKMEYaSxU2Ax6YQyEVNd3d9jMLY9fF"
    result = _ask("--bootstrap", nobody, "--model", "some-model", "Hi", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"no bootstrap peer answered ({nobody}: Connection refused)" in result.stderr
    assert "no node serves" not in result.stderr and "Check --bootstrap" in result.stderr
