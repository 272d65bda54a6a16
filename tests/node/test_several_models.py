"""One node process serving two imported models (the tiny Llama and SmolLM2): each is announced in its own
pool with its own benchmark and answers its own requests; `dolphin model list` and a gateway configured
with no model find both through the network."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from node.models import load_manifest
from node.processes import node_process
from node.testing import find_member, watch_pool
from p2p import DhtMode, HostConfig, open_host
from p2p.processes import relay_process
from p2p.testing import PeerProcess
from pool import complete
from pool.attestations import attestation_validator
from protocols import envelope
from protocols.ids import attestation_topic
from protocols.keys import Identity
from protocols.messages import BenchmarkAttestation
from tests.node.test_models import greedy_ids

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def two_model_node(tmp_path_factory, tiny_model_dir, smollm2_model_dir):
    base = tmp_path_factory.mktemp("several")
    relay = relay_process(base / "relay")
    trio.run(relay.wait_ready)
    small = {"PROMPT_TOKENS": "16", "OUTPUT_TOKENS": "4", "STREAMS": "2"}  # a quick start on a busy CPU
    os.environ.update({f"DOLPHIN_NODE_BENCHMARK_{k}": v for k, v in small.items()})
    os.environ["DOLPHIN_NODE_ATTESTATION_INTERVAL"] = "0.5"  # late listeners hear the benchmarks too
    try:
        node = node_process(
            base / "node", tiny_model_dir, "--bootstrap", relay.addr, "--extra-model", str(smollm2_model_dir)
        )
    finally:
        for key in [*(f"DOLPHIN_NODE_BENCHMARK_{k}" for k in small), "DOLPHIN_NODE_ATTESTATION_INTERVAL"]:
            os.environ.pop(key)
    try:
        trio.run(node.wait_ready, 240.0)
        yield relay, node, load_manifest(tiny_model_dir), load_manifest(smollm2_model_dir)
    finally:
        print(node.log_tail())
        node.stop()
        relay.stop()


@pytest.mark.process
@pytest.mark.slow
def test_each_model_is_announced_benchmarked_and_answered_by_its_own_engine(
    two_model_node, tiny_model_dir, tmp_path
):
    relay, node, tiny, smollm2 = two_model_node
    assert [m["model"] for m in node.ready["models"]] == [tiny.model_id().hex(), smollm2.model_id().hex()]

    async def ask_both() -> dict:
        config = HostConfig(tmp_path / "client", bootstrap=(relay.addr,), dht_mode=DhtMode.CLIENT)
        answers: dict = {}
        async with open_host(config) as client:
            for manifest in (tiny, smollm2):
                model = manifest.model_id()
                view = await watch_pool(client, model)
                validate = attestation_validator(model, is_validator_peer=lambda key: False)
                attested = await client.gossip.subscribe(attestation_topic(model), validate)
                member = await find_member(client, view, node.peer_id)
                assert member.model_name == manifest.name
                completion = await complete(
                    client, member.contact, [("user", QUESTION)], identity=Identity.generate(), max_tokens=12
                )
                assert completion.tokens_out > 0 and completion.receipt_stored
                assert completion.receipt is not None and completion.receipt.model == model
                answers[manifest.name] = completion
                with trio.fail_after(30):
                    async for message in attested:
                        attestation = envelope.open_signed(message.data, BenchmarkAttestation).message
                        assert attestation.model == model and attestation.decode_tps_milli > 0
                        break
        return answers

    answers = trio.run(ask_both)
    assert "Paris" in answers[smollm2.name].text  # the real model answered its request
    # ... and the tiny model's engine the tiny model's: the ids its own engine gives here, greedily.
    ids = [i for piece in answers[tiny.name].pieces for i in piece.token_ids]
    assert ids == trio.run(greedy_ids, tiny_model_dir, QUESTION, 12)


@pytest.mark.process
@pytest.mark.slow
def test_model_list_shows_both_pools_with_their_nodes_and_speeds(two_model_node):
    relay, _, tiny, smollm2 = two_model_node
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "model",
            "list",
            "--bootstrap",
            relay.addr,
            "--wait",
            "6",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DOLPHIN_DATA_DIR": str(relay.data_dir / "no-chain")},
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {tiny.name, smollm2.name}
    for manifest in (tiny, smollm2):
        row = rows[manifest.name]
        assert row["model"] == manifest.model_id().hex() and row["nodes"] == 1
        assert row["attested_tokens_per_s"] > 0 and row["price"] is None  # no chain: no price


@pytest.mark.process
@pytest.mark.slow
def test_a_gateway_configured_with_no_model_lists_and_answers_both(two_model_node, tmp_path):
    relay, _, tiny, smollm2 = two_model_node
    gateway = PeerProcess(
        tmp_path / "gateway",
        ["--bootstrap", relay.addr, "--http", "127.0.0.1:0", "--chain-dir", str(tmp_path / "no-chain")],
        program=("cli.main", "-v", "gateway"),
    )
    try:
        trio.run(gateway.wait_ready, 60.0)
        url = gateway.ready["http"]
        deadline = time.monotonic() + 60
        while True:
            listed = {m["id"]: m for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}
            if len(listed) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(listed) == {tiny.name, smollm2.name}
        assert listed[smollm2.name]["dolphin_model_id"] == smollm2.model_id().hex()
        body = {
            "model": smollm2.name,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 12,
            "temperature": 0,
        }
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()
        assert "Paris" in answer["choices"][0]["message"]["content"]
    finally:
        gateway.stop()


@pytest.mark.integration
def test_the_same_model_twice_is_refused_before_anything_starts(tiny_model_dir, tmp_path):
    import shutil

    from node.config import NodeConfig
    from node.daemon import serve_node
    from node.errors import NodeError

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)  # another folder, the same model id
    config = NodeConfig(
        data_dir=tmp_path / "node", model=tiny_model_dir, extra_models=(str(copy),), listen=()
    )
    with pytest.raises(NodeError, match="the same model is named twice"):
        trio.run(serve_node, config)
    assert not (tmp_path / "node" / "ready.json").exists()
