"""`dolphin node`: help, init, refusals before serving, receipts as JSON, and register on a dev chain."""

import json
import shutil
import socket

import pytest
import trio
import trio_asyncio
from click.testing import CliRunner

from chain.client import ChainClient
from cli.main import main
from node.config import CONFIG_FILE, NodeConfig, load_config
from node.ledger import open_ledger
from node.registration import BINDING_FILE, load_binding, node_peer_id
from protocols.eth import keccak256
from protocols.inference import verify_countersigned_receipt
from protocols.testing import exchange_pair


def _run(*args: str, expect: int = 0, env: dict | None = None) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == expect, (args, result.output, result.exception)
    return result.output


@pytest.mark.unit
def test_help_names_the_options_and_subcommands():
    output = _run("node", "--help")
    for word in ("--model", "--listen", "--bootstrap", "--data-dir", "--yield-when-busy", "--paid-only"):
        assert word in output
    for command in ("init", "register", "receipts"):
        assert command in output


@pytest.mark.unit
def test_init_writes_every_default_once(tmp_path):
    output = _run("node", "init", "--data-dir", str(tmp_path))
    path = tmp_path / CONFIG_FILE
    assert str(path) in output
    assert load_config(path) == NodeConfig(data_dir=tmp_path)
    assert "already" not in output
    assert "exists" in _run("node", "init", "--data-dir", str(tmp_path), expect=1)
    _run("node", "init", "--data-dir", str(tmp_path), "--force")


@pytest.mark.chain
@pytest.mark.process
def test_the_node_refuses_to_start_without_a_model_or_with_a_tampered_one(tmp_path, tiny_model_dir):
    assert "no model to serve" in _run("node", "--data-dir", str(tmp_path / "n"), expect=1)
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"hidden_size": 64', '"hidden_size": 65'))
    output = _run("node", "--model", str(copy), "--data-dir", str(tmp_path / "n"), expect=1)
    assert "config.json was modified" in output
    bad = tmp_path / "bad.toml"
    bad.write_text("max_batch = -1\n")
    assert "max_batch must be positive" in _run("node", "--config", str(bad), expect=1)


@pytest.mark.chain
@pytest.mark.process
def test_receipts_print_one_json_array_per_epoch_or_totals(tmp_path):
    assert "no ledger" in _run("node", "receipts", "--data-dir", str(tmp_path), expect=1)
    day = 24 * 3600 * 1000
    starts = [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_000 + day]
    evidence = []
    for index, started in enumerate(starts):
        client, node = exchange_pair(client_n=index + 1, now_ms=started)
        client.receive(node.header())
        client.receive(node.chunk("ab", (1, 2)))
        client.receive(node.end("stop", tokens_in=4, started_at_ms=started, first_token_ms=2, duration_ms=5))
        evidence.append(client.countersigned_receipt())

    async def store() -> int:
        async with trio_asyncio.open_loop(), open_ledger(tmp_path) as ledger:
            for data in evidence:
                await ledger.store_receipt(verify_countersigned_receipt(data))
            return ledger.epoch_of(starts[0])

    epoch = trio.run(store)
    rows = json.loads(_run("node", "receipts", "--data-dir", str(tmp_path), "--json"))
    assert len(rows) == 3
    assert {
        "request_id",
        "tokens_in",
        "tokens_out",
        "started_at_ms",
        "duration_ms",
        "client",
        "epoch",
    } <= set(rows[0])
    assert all(len(bytes.fromhex(row["request_id"])) == 16 for row in rows)
    one_epoch = json.loads(
        _run("node", "receipts", "--data-dir", str(tmp_path), "--epoch", str(epoch), "--json")
    )
    assert [row["epoch"] for row in one_epoch] == [epoch, epoch]
    totals = json.loads(_run("node", "receipts", "--data-dir", str(tmp_path), "--totals", "--json"))
    assert totals == [
        {"epoch": epoch, "receipts": 2, "tokens_in": 8, "tokens_out": 4, "paid_receipts": 0},
        {"epoch": epoch + 1, "receipts": 1, "tokens_in": 4, "tokens_out": 2, "paid_receipts": 0},
    ]
    assert "epoch totals" in _run("node", "receipts", "--data-dir", str(tmp_path), "--totals")


@pytest.mark.chain
@pytest.mark.process
def test_register_binds_the_node_on_chain_and_keeps_the_binding(tmp_path, deployed_chain):
    key_file = tmp_path / "operator.key"
    key_file.write_text(deployed_chain.keys[4] + "\n")
    key_file.chmod(0o600)
    node_dir = tmp_path / "node"
    args = ("node", "register", "--data-dir", str(node_dir), "--rpc-url", deployed_chain.rpc_url)
    chain_args = ("--chain-dir", str(deployed_chain.path.parent), "--key-file", str(key_file))
    output = _run(*args, *chain_args)
    binding = load_binding(node_dir)
    assert f"0x{binding.operator.hex()}" in output and deployed_chain.keys[4].removeprefix("0x") not in output
    assert binding.peer_id_hash == keccak256(node_peer_id(node_dir))
    reader = ChainClient(deployed_chain.rpc_url, deployed_chain.deployment)
    operator = reader.w3.to_checksum_address("0x" + binding.operator.hex())
    assert reader.call("Bonding", "isNodeOf", operator, binding.peer_id_hash)
    assert json.loads((node_dir / BINDING_FILE).read_text())["chain_id"] == deployed_chain.deployment.chain_id
    # Registering again is refused by the contract, with its reason.
    assert "AlreadyRegistered" in _run(*args, *chain_args, expect=1)
    missing = _run(
        "node",
        "register",
        "--data-dir",
        str(node_dir),
        "--chain-dir",
        str(tmp_path / "none"),
        "--key-file",
        str(key_file),
        expect=1,
    )
    assert "no chain to talk to" in missing


@pytest.mark.unit
def test_announce_reaches_the_node_config():
    from cli.node import _explicit, group

    ctx = group.make_context("node", ["--announce", "/ip4/127.0.0.1/tcp/9", "--no-listen"])
    settings = _explicit(ctx)
    assert settings["announce"] == ("/ip4/127.0.0.1/tcp/9",) and settings["listen"] == ()


@pytest.mark.integration
def test_busy_ports_and_bad_addresses_are_refused_before_the_model_loads(tmp_path, tiny_model_dir):
    """Two default nodes on one machine both want 127.0.0.1:8477: the second said so only after loading
    and benchmarking its model, in a 165-line exception group. Now: one line, naming port and option."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        node = ["node", "--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "n")]
        api = _run(*node, "--local-api", f"127.0.0.1:{port}", expect=1)
        assert f"port {port} (--local-api 127.0.0.1:{port}) is in use by another process" in api
        listen = _run(*node, "--listen", f"/ip4/127.0.0.1/tcp/{port}", expect=1)
        assert f"port {port} (--listen 127.0.0.1:{port}) is in use" in listen
    bootstrap = _run(*node, "--bootstrap", "/ip4/127.0.0.1/tcp/4001", expect=1)
    assert "must end in /p2p/<peer-id>" in bootstrap
    for refused in (api, listen, bootstrap):
        assert "verifying" not in refused and "Traceback" not in refused
    assert not (tmp_path / "n" / "benchmark.json").exists()
