"""`dolphin ask` as a user runs it: one JSON object with the issue's fields, streaming to stdout, and
clear errors for an unknown model or an unreachable bootstrap peer; asked by name or id, it fetches the
model's tokenizer from the pool and countersigns only exact bills."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from cli.main import main
from node.models import load_manifest
from node.models.tokens import TokenizerCounter
from node.processes import node_process
from node.testing import running_pool
from p2p.processes import relay_process

ROOT = Path(__file__).resolve().parents[2]
INFLATING_NODE = ("tests.validator.cheating_node", "inflate", "3", "--", "-v", "node")


def _ask(*args: str, home: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`dolphin ask -v` with `home` as its HOME (where it caches tokenizers: ~/.dolphin/tokenizers): its
    info log is in the failure message of an assertion that shows stderr."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "-v", "ask", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "HOME": str(home)} if home is not None else None,
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
    home = tmp_path / "home"
    exact = TokenizerCounter.from_model_dir(tiny_model_dir).prompt_tokens([("user", "Hello?")])
    with running_pool(tmp_path, tiny_model_dir, direct=0, hidden=1) as (relay, (node,)):
        result = _ask(
            "--bootstrap",
            relay.addr,
            "--model",
            manifest.name,
            "--max-tokens",
            "6",
            "--json",
            "Hello?",
            home=home,
        )
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)  # one JSON object, nothing else on stdout
        assert answer["node"] == node.peer_id and len(bytes.fromhex(answer["request_id"])) == 16
        assert 1 <= answer["tokens_out"] <= 6 and answer["tokens_in"] == exact
        # By name, the client counted with the tokenizer it fetched from the pool (through the relay).
        assert (home / ".dolphin" / "tokenizers" / manifest.model_id().hex() / "tokenizer.json").is_file()
        assert answer["finish_reason"] in ("stop", "length") and answer["receipt_stored"] is True
        assert answer["model"] == manifest.model_id().hex() and isinstance(answer["text"], str)
        streamed = _ask(
            "--bootstrap", relay.addr, "--model", str(tiny_model_dir), "--max-tokens", "6", "Hi", home=home
        )
        assert streamed.returncode == 0 and streamed.stdout.endswith("\n"), streamed.stderr
        by_id = _ask(
            "--bootstrap",
            relay.addr,
            "-m",
            manifest.model_id().hex(),
            "--max-tokens",
            "2",
            "--json",
            "-",
            home=home,
        )
        assert by_id.returncode == 0 and json.loads(by_id.stdout)["tokens_out"] <= 2
        unknown = _ask(
            "--bootstrap", relay.addr, "--model", "no-such-model", "--timeout", "60", "Hi", home=home
        )
        assert unknown.returncode == 1 and "no node serves a model called 'no-such-model'" in unknown.stderr
        assert "Traceback" not in unknown.stderr


@pytest.mark.process
@pytest.mark.slow
def test_without_the_folder_the_tokenizer_comes_from_the_pool_and_an_inflated_bill_is_refused(
    tmp_path, tiny_model_dir
):
    """Attack: the only node bills 3 prompt tokens more than it served, far inside the byte bound a client
    without the tokenizer holds it to. `dolphin ask` by name fetches the tokenizer from that very node
    (which cannot serve another one under the model id) and does not countersign: the user has the
    answer (greedy, it runs to --max-tokens), the node no receipt to be paid on."""
    manifest = load_manifest(tiny_model_dir)
    home = tmp_path / "home"
    cached = home / ".dolphin" / "tokenizers" / manifest.model_id().hex()
    relay = relay_process(tmp_path / "relay")
    cheater = None

    def refused(model: str) -> None:
        result = _ask("--bootstrap", relay.addr, "-m", model, "--max-tokens", "4", "--json", "Hi", home=home)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["tokens_delivered"] == 4 and answer["text"]
        assert answer["receipts"] == [] and answer["tokens_in"] == 0, result.stderr
        assert not answer["receipt_stored"]
        (attempt,) = answer["attempts"]
        assert "failed a check" in attempt["error"] and attempt["error"].endswith("tokens in")

    try:
        trio.run(relay.wait_ready)
        cheater = node_process(
            tmp_path / "cheater", tiny_model_dir, "--bootstrap", relay.addr, program=INFLATING_NODE
        )
        trio.run(cheater.wait_ready, 180)
        refused(manifest.name)
        assert (cached / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
        assert (cached.stat().st_mode & 0o777) == 0o700
        # A cache that no longer matches the manifest is fetched again, and the bill still refused.
        (cached / "tokenizer.json").write_text("{}")
        refused(manifest.model_id().hex())
        assert (cached / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
    finally:
        if cheater is not None:
            cheater.stop()
        relay.stop()


@pytest.mark.process
def test_an_unreachable_bootstrap_peer_is_named_at_once(tmp_path):
    # Port 9 (discard) has no listener here.
    nobody = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWJhtwmfN4WWzgN4vKMEYaSxU2Ax6YQyEVNd3d9jMLY9fF"
    result = _ask("--bootstrap", nobody, "--model", "some-model", "Hi", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"no bootstrap peer answered ({nobody}: Connection refused)" in result.stderr
    assert "no node serves" not in result.stderr and "Check --bootstrap" in result.stderr
