"""`dolphin gateway` as a process over real nodes and a relay, driven by the official `openai` package
and by raw HTTP: models, chat, completions, streaming, logprobs, errors, disconnects, reports, drain."""

import contextlib
import json
import signal
import time

import httpx
import openai
import pytest
import trio

from node.models import load_manifest
from node.testing import running_pool
from p2p import HostConfig, accept_all, open_host
from p2p.testing import PeerProcess
from protocols import envelope
from protocols.ids import REPORTS_TOPIC
from protocols.inference import verify_countersigned_receipt
from protocols.keys import peer_id_to_text
from protocols.messages import UserReport

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "sk-test-7d1f"
MARKER = "walrus-marker-51c0e2"


@pytest.fixture(scope="module")
def pool(tmp_path_factory, tiny_model_dir):
    with running_pool(tmp_path_factory.mktemp("pool"), tiny_model_dir, direct=1, hidden=1) as (relay, nodes):
        yield relay, nodes


@contextlib.contextmanager
def _gateway(data_dir, relay, tiny_model_dir):
    gateway = PeerProcess(
        data_dir,
        [
            "--bootstrap",
            relay.addr,
            "--http",
            "127.0.0.1:0",
            "--model",
            str(tiny_model_dir),  # a folder, as `dolphin ask` takes: its manifest's id
            "--api-key",
            API_KEY,
        ],
        program=("cli.main", "-v", "gateway"),
    )
    try:
        trio.run(gateway.wait_ready, 60.0)
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def network(pool, tmp_path_factory, tiny_model_dir):
    relay, nodes = pool
    with _gateway(tmp_path_factory.mktemp("gateway"), relay, tiny_model_dir) as gateway:
        yield gateway, nodes, load_manifest(tiny_model_dir)


def _openai(gateway, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.ready["http"] + "/v1", api_key=key, max_retries=0, timeout=60)


def _models(gateway) -> list:
    """/v1/models once both nodes are in it (the gateway hears their heartbeats within seconds)."""
    client = _openai(gateway)
    deadline = time.monotonic() + 60
    while True:
        models = client.models.list().data
        if (models and models[0].model_dump()["nodes"] == 2) or time.monotonic() > deadline:
            return models
        time.sleep(0.5)


def test_models_list_the_pool_with_its_node_count_and_price(network):
    gateway, _, manifest = network
    (model,) = _models(gateway)
    entry = model.model_dump()
    assert entry["id"] == manifest.name and entry["dolphin_model_id"] == manifest.model_id().hex()
    assert entry["nodes"] == 2 and entry["owned_by"] == "dolphin-network"
    assert entry["pricing"]["per_tokens"] == 1_000_000 and entry["pricing"]["prompt"] == "0"


def test_chat_completion_with_logprobs_and_usage_from_the_receipts(network):
    gateway, _, manifest = network
    client = _openai(gateway)
    answer = client.chat.completions.create(
        model=manifest.name,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello " + MARKER}],
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    (choice,) = answer.choices
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    tokens = choice.logprobs.content
    assert 1 <= len(tokens) == answer.usage.completion_tokens <= 8
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
    assert all(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in tokens)
    assert answer.usage.prompt_tokens > 5 and answer.id.startswith("chatcmpl-")
    # The model was named by its folder's id, not given as a model_dir: the gateway counted the bill with
    # the tokenizer it fetched from the pool into its data dir.
    assert (gateway.data_dir / "tokenizers" / manifest.model_id().hex() / "tokenizer.json").is_file()
    # The same model by its id, with a seed and top_p, answers as well.
    again = client.chat.completions.create(
        model=manifest.model_id().hex(),
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        seed=7,
        top_p=0.9,
        temperature=0.7,
    )
    assert again.usage.completion_tokens <= 4


def test_streaming_chat_adds_up_and_ends_with_the_usage_chunk(network):
    gateway, _, manifest = network
    client = _openai(gateway)
    stream = client.chat.completions.create(
        model=manifest.name,
        messages=[{"role": "user", "content": "Tell me about the sea."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *content, finish, usage = chunks
    assert all(c.usage is None for c in [*content, finish]) and usage.choices == []
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert finish.choices[0].finish_reason in ("stop", "length")
    assert 1 <= usage.usage.completion_tokens <= 24 and text
    assert len({c.id for c in chunks}) == 1


def test_completions_continue_the_prompt_and_stop_sequences_pass_through(network):
    gateway, _, manifest = network
    client = _openai(gateway)
    answer = client.completions.create(
        model=manifest.name, prompt="Once upon a time", max_tokens=6, stop=["\n\n"]
    )
    assert answer.object == "text_completion" and answer.usage.completion_tokens <= 6
    streamed = list(
        client.completions.create(model=manifest.name, prompt="The sea", max_tokens=5, stream=True)
    )
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")


def test_openai_errors_come_with_the_right_status(network):
    gateway, _, manifest = network
    chat = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError):
        _openai(gateway, key="wrong").chat.completions.create(model=manifest.name, messages=chat)
    client = _openai(gateway)
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.chat.completions.create(model="no-such-model", messages=chat, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=manifest.name, messages=chat, max_tokens=0)
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model=manifest.name, messages=chat, top_logprobs=30, logprobs=True)
    # What the network does not do is refused naming the parameter, never silently ignored.
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for extra, param in [
        ({"n": 2}, "n"),
        ({"tools": [tool]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=manifest.name, messages=chat, max_tokens=2, **extra)
        assert refused.value.body["param"] == param
    # Nobody without a chain can be bonded: no capacity for such a request.
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(
            model=manifest.name, messages=chat, max_tokens=2, extra_body={"provider": {"bonded_only": True}}
        )
    assert raised.value.status_code == 503 and "bonded-only needs a chain" in str(raised.value)
    # Pinned to a node that does not serve the model: no capacity either.
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(
            model=manifest.name,
            messages=chat,
            max_tokens=2,
            extra_body={"provider": {"only": ["12D3KooWNoSuchNodeServesThisModelAtAll"]}},
        )
    assert raised.value.status_code == 503


@pytest.mark.trio
async def test_raw_http_edge_cases(network):
    gateway, _, manifest = network
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=gateway.ready["http"], timeout=60) as http:
        cases = [
            ({"content": b"{not json"}, 400, "not JSON"),
            ({"content": b"[1, 2]"}, 400, "JSON object"),
            ({"json": {"model": manifest.name, "messages": []}}, 400, "messages"),
            ({"json": {"messages": [{"role": "user", "content": "x"}]}}, 400, "model is required"),
            (
                {"json": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}},
                404,
                "unknown model",
            ),
            (
                {
                    "json": {
                        "model": manifest.name,
                        "messages": [{"role": "user", "content": "x"}],
                        "provider": {"x": 1},
                    }
                },
                400,
                "provider",
            ),
            (
                {
                    "json": {
                        "model": manifest.name,
                        "messages": [{"role": "user", "content": "x"}],
                        "provider": {"only": "one-peer"},
                    }
                },
                400,
                "provider.only",
            ),
            ({"content": b"{" + b" " * (2 << 20) + b"}"}, 413, "limit"),
        ]
        json_type = {"content-type": "application/json"}
        for request, status, message in cases:
            response = await http.post("/v1/chat/completions", headers=headers | json_type, **request)
            assert response.status_code == status, (request, response.text)
            if status == 413:  # its body is left unread: the server closes, and says so (CI: the next
                assert response.headers["connection"] == "close"  # request went into the close)
            error = response.json()["error"]
            assert message in error["message"] and error["type"]
            if status == 404:  # as the node's local API and OpenAI say it
                assert (error["type"], error["code"]) == ("invalid_request_error", "model_not_found")
        for missing in ({}, {"authorization": "Bearer nope"}, {"authorization": API_KEY}):
            response = await http.get("/v1/models", headers=missing)
            assert response.status_code == 401 and "API key" in response.json()["error"]["message"]
        token_ids = {"model": manifest.name, "prompt": [1, 2, 3]}
        response = await http.post("/v1/completions", headers=headers, json=token_ids)
        assert response.status_code == 400 and "token-id prompts" in response.json()["error"]["message"]
        assert (await http.get("/health")).json()["serving"]
        folder = {"model": "/srv/models/smollm2", "messages": [{"role": "user", "content": "x"}]}
        with trio.fail_after(5):  # no 15 s wait for a name no node can announce
            response = await http.post("/v1/chat/completions", headers=headers, json=folder)
        assert response.status_code == 404 and "is a folder path" in response.json()["error"]["message"]


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.trio
async def test_a_client_leaving_mid_stream_stops_the_nodes_generation(network):
    gateway, nodes, manifest = network
    headers = {"authorization": f"Bearer {API_KEY}"}
    body = {
        "model": manifest.name,
        "messages": [{"role": "user", "content": "Write a very long story about a ship."}],
        "max_tokens": 1000,
        "stream": True,
        "provider": {"conversation": "disconnect-test"},
    }
    async with httpx.AsyncClient(timeout=60) as http:

        async def abandoned() -> float:
            texts = [(await http.get(node.ready["metrics"])).text for node in nodes]
            return sum(_metric(text, "dolphin_node_abandoned_total") for text in texts)

        before = await abandoned()
        async with http.stream(
            "POST", gateway.ready["http"] + "/v1/chat/completions", json=body, headers=headers
        ) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break  # one chunk, then the client goes away
        with trio.fail_after(20):
            while await abandoned() <= before:
                await trio.sleep(0.1)
        gateway_metrics = (await http.get(gateway.ready["http"] + "/metrics")).text
        assert (
            _metric(gateway_metrics, 'dolphin_gateway_requests_total{endpoint="chat",status="499"}') >= 1
        ), [line for line in gateway_metrics.splitlines() if "requests_total" in line]


@pytest.mark.trio
async def test_a_report_by_answer_id_reaches_a_validator_signed_by_the_session_key(network, tmp_path):
    gateway, _, manifest = network
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=gateway.ready["http"], timeout=60) as http:
        answer = await http.post(
            "/v1/chat/completions",
            headers=headers,
            json={"model": manifest.name, "messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 4},
        )
        answer_id = answer.json()["id"]
        missing = await http.post(
            "/v1/reports", headers=headers, json={"request_id": "chatcmpl-x", "reason": "bad"}
        )
        assert missing.status_code == 404
        async with open_host(HostConfig(tmp_path / "validator")) as validator:
            received = await validator.gossip.subscribe(REPORTS_TOPIC, accept_all)
            await validator.connect(gateway.ready["listen_addrs"][0])
            report = {"request_id": answer_id, "reason": "it said 5", "reporter": "0x" + "ab" * 20}
            response = await http.post("/v1/reports", headers=headers, json=report)
            assert response.status_code == 202 and len(response.json()["ids"]) == 1
            message = await received.receive(timeout=30)
    signed = envelope.open_signed(message.data, UserReport)
    assert peer_id_to_text(signed.peer_id) == message.origin == gateway.peer_id
    verified = verify_countersigned_receipt(signed.message.receipt)
    assert verified.client_key == signed.signer  # the reporter is the client of that answer
    assert signed.message.reason == "it said 5" and signed.message.reporter == bytes.fromhex("ab" * 20)


@pytest.mark.trio
async def test_a_web_page_cannot_spend_the_gateways_credit(network):
    """Attack: a page the operator visits posts to the gateway as text/plain (no CORS preflight), from its
    own origin, or through DNS rebinding. Each is refused before any node is asked (even with the key: a
    browser may hold one for a page of the operator's own)."""
    gateway, _, manifest = network
    body = json.dumps({"model": manifest.name, "messages": [{"role": "user", "content": "spend"}]})
    auth = {"authorization": f"Bearer {API_KEY}"}
    url = gateway.ready["http"]
    port = url.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        before = (await http.get("/metrics")).text
        plain = await http.post(
            "/v1/chat/completions", content=body, headers=auth | {"content-type": "text/plain"}
        )
        assert plain.status_code == 415
        cross = await http.post(
            "/v1/chat/completions",
            content=body,
            headers=auth | {"content-type": "application/json", "origin": "https://evil.example"},
        )
        assert cross.status_code == 403 and "allowed_origins" in cross.json()["error"]["message"]
        rebound = await http.post(
            "/v1/chat/completions",
            content=body,
            headers=auth | {"content-type": "application/json", "host": f"evil.example:{port}"},
        )
        assert rebound.status_code == 403 and "loopback" in rebound.json()["error"]["message"]
        after = (await http.get("/metrics")).text
    assert _metric(after, 'dolphin_gateway_requests_total{endpoint="chat",status="200"}') == _metric(
        before, 'dolphin_gateway_requests_total{endpoint="chat",status="200"}'
    )


def test_prompts_stay_out_of_the_gateways_files_and_sigterm_drains(pool, tmp_path, tiny_model_dir):
    relay, _ = pool  # a gateway of its own: the module's serves the other tests, in whatever order
    with _gateway(tmp_path / "gateway", relay, tiny_model_dir) as gateway:
        answer = _openai(gateway).chat.completions.create(
            model=_models(gateway)[0].id,
            messages=[{"role": "user", "content": "Hello " + MARKER}],
            max_tokens=8,
        )
        assert answer.choices[0].message.content
        for path in gateway.data_dir.rglob("*"):
            if path.is_file():
                assert MARKER.encode() not in path.read_bytes(), path
        assert MARKER not in gateway.log_tail(10**7)
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(30) == 0
        assert not (gateway.data_dir / "ready.json").exists()
        assert "draining" in gateway.log_tail()
        assert gateway.ready["http"].startswith("http://127.0.0.1:") and gateway.ready["api_key_required"]
