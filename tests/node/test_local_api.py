"""The operator's OpenAI-compatible API on 127.0.0.1: chat, completions, streaming, errors, metrics."""

import contextlib
import json

import httpx
import pytest
import trio

from node.engines import ChatTurn, EngineError, EngineUnavailable, GenerationRequest
from node.local_api import build_app, serve_local_api
from node.metrics import NodeMetrics
from node.testing import LongAnswers

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _serve_api(engine, metrics, max_new_tokens):
    state = {"refusing": None}
    app = build_app(
        engine,
        model_name="dolphin-tiny-llama",
        model_id=b"\x05" * 32,
        metrics=metrics,
        max_new_tokens=max_new_tokens,
        refusing=lambda: state["refusing"],
    )
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_local_api, app, "127.0.0.1:0")
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http, state
        nursery.cancel_scope.cancel()


@pytest.fixture
async def api(tiny_engine):
    async with _serve_api(tiny_engine, NodeMetrics(tiny_engine.load), 64) as served:
        yield served


class _FailingAfter:
    """`engine` whose answers fail with `error` after `pieces` pieces (0: before the first)."""

    def __init__(self, engine, pieces, error):
        self._engine, self._pieces, self._error = engine, pieces, error

    def __getattr__(self, name):
        return getattr(self._engine, name)

    async def generate(self, request):
        count = 0
        async for piece in self._engine.generate(request):
            if count == self._pieces:
                raise self._error
            count += 1
            yield piece
        raise AssertionError("the answer ended before it could fail")


@pytest.fixture
async def long_api(tiny_engine):
    """The API over an engine whose every answer runs to max_tokens (up to 1,500)."""
    async with _serve_api(LongAnswers(tiny_engine), NodeMetrics(tiny_engine.load), 1500) as served:
        yield served


async def _expected(engine, messages, max_tokens):
    request = GenerationRequest(messages=messages, max_tokens=max_tokens)
    return "".join([piece.text async for piece in engine.generate(request)])


@pytest.mark.trio
async def test_chat_completion_answers_like_the_engine_and_counts_usage(api, tiny_engine):
    http, _ = api
    body = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 9}
    response = await http.post("/v1/chat/completions", json=body | {"temperature": 0})
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["model"] == "dolphin-tiny-llama"
    choice = answer["choices"][0]
    expected = await _expected(tiny_engine, (ChatTurn("user", "What is the capital of France?"),), 9)
    assert choice["message"] == {"role": "assistant", "content": expected}
    assert choice["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 9 and answer["usage"]["prompt_tokens"] > 5


@pytest.mark.trio
async def test_streaming_sends_server_sent_events_that_add_up_to_the_answer(api, tiny_engine):
    http, _ = api
    body = {
        "messages": [{"role": "user", "content": "Hello!"}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = []
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                chunks.append(line.removeprefix("data: "))
    assert chunks[-1] == "[DONE]"
    *events, usage = [json.loads(chunk) for chunk in chunks[:-1]]
    text = "".join(e["choices"][0]["delta"]["content"] for e in events)
    assert text == await _expected(tiny_engine, (ChatTurn("user", "Hello!"),), 12)
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    # With stream_options.include_usage, as OpenAI: usage null on every chunk, then one with the usage.
    assert all(e["usage"] is None for e in events)
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 12
    assert all(e["object"] == "chat.completion.chunk" for e in [*events, usage])


@pytest.mark.trio
async def test_completions_take_text_or_token_ids_and_give_logprobs(api, tiny_engine):
    http, _ = api
    by_text = await http.post(
        "/v1/completions", json={"prompt": "The quick brown", "max_tokens": 4, "temperature": 0}
    )
    ids = await tiny_engine.tokenize("The quick brown")
    body = {"prompt": ids, "max_tokens": 4, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    by_ids = await http.post("/v1/completions", json=body)
    assert by_text.status_code == by_ids.status_code == 200
    assert by_text.json()["choices"][0]["text"] == by_ids.json()["choices"][0]["text"]
    # The completions API's own logprobs shape, tokens named by their text (as OpenAI and vLLM do).
    choice = by_ids.json()["choices"][0]
    logprobs = choice["logprobs"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert len(logprobs["tokens"]) == 4 and all(len(top) == 2 for top in logprobs["top_logprobs"])
    assert all(value <= 0 for value in logprobs["token_logprobs"])
    assert "".join(logprobs["tokens"]) == choice["text"]
    offsets = [sum(len(t) for t in logprobs["tokens"][:i]) for i in range(4)]
    assert logprobs["text_offset"] == offsets
    models = (await http.get("/v1/models")).json()
    assert models["data"][0]["id"] == "dolphin-tiny-llama"
    assert models["data"][0]["dolphin_model_id"] == "05" * 32


@pytest.mark.trio
async def test_bad_requests_get_a_clear_400_and_a_draining_node_a_503(api):
    http, state = api
    cases = [
        (b"{not json", "not JSON"),
        (json.dumps({"messages": []}).encode(), "messages must be a non-empty list"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), "role"),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}).encode(),
            "max_tokens",
        ),
        (json.dumps({"messages": [{"role": "user", "content": "x " * 3000}]}).encode(), "tokens; this model"),
    ]
    for body, message in cases:
        response = await http.post("/v1/chat/completions", content=body)
        assert response.status_code == 400, body
        assert message in response.json()["error"]["message"]
    # Refused by the engine before its first token: the same 400 when streamed (it was a 200 and an error
    # event), as OpenAI refuses a prompt over the context whether it streams or not.
    too_long = {"messages": [{"role": "user", "content": "x " * 3000}], "stream": True}
    response = await http.post("/v1/chat/completions", json=too_long)
    assert response.status_code == 400 and "tokens; this model" in response.json()["error"]["message"]
    state["refusing"] = "the node is shutting down"
    response = await http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
    assert response.status_code == 503 and "shutting down" in response.json()["error"]["message"]
    response = await http.post(
        "/v1/completions", content=b"{not json"
    )  # draining comes first, as at gateways
    assert response.status_code == 503


@pytest.mark.trio
async def test_a_failing_engine_gets_openai_s_status_before_the_answer_and_an_error_event_in_it(tiny_engine):
    body = {"prompt": "The quick brown", "max_tokens": 8, "temperature": 0}
    broken = _FailingAfter(tiny_engine, 2, EngineError("the engine broke"))
    async with _serve_api(broken, NodeMetrics(tiny_engine.load), 64) as (http, _):
        whole = await http.post("/v1/completions", json=body)
        assert whole.status_code == 500 and whole.json()["error"]["type"] == "server_error"
        async with http.stream("POST", "/v1/completions", json=body | {"stream": True}) as response:
            assert response.status_code == 200  # the answer had started: only the stream can say it failed
            events = [line.removeprefix("data: ") async for line in response.aiter_lines() if line]
        assert events[-1] == "[DONE]"
        *chunks, failure = [json.loads(event) for event in events[:-1]]
        assert len(chunks) == 2 and all(chunk["choices"][0]["text"] for chunk in chunks)
        assert failure["error"] == {
            "message": "the engine broke",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    stopped = _FailingAfter(tiny_engine, 0, EngineUnavailable("the engine is not running"))
    async with _serve_api(stopped, NodeMetrics(tiny_engine.load), 64) as (http, _):
        for stream in (False, True):
            response = await http.post("/v1/completions", json=body | {"stream": stream})
            assert response.status_code == 503 and response.json()["error"]["type"] == "unavailable"


@pytest.mark.trio
async def test_metrics_and_health_describe_the_node(api):
    http, _ = api
    await http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3})
    metrics = (await http.get("/metrics")).text
    assert 'dolphin_node_requests_total{source="local"} 1.0' in metrics
    assert 'dolphin_node_tokens_total{direction="output"} 3.0' in metrics
    assert "dolphin_node_time_to_first_token_seconds_bucket" in metrics
    assert "dolphin_node_engine_healthy 1.0" in metrics
    health = await http.get("/health")
    assert health.status_code == 200 and health.json()["healthy"]


@pytest.mark.trio
async def test_a_client_closing_a_stream_stops_its_generation(long_api, tiny_engine):
    # Every answer runs to max_tokens here: only the client leaving can stop this one short of 1,500.
    http, _ = long_api
    before = tiny_engine.statistics().tokens_generated
    body = {"prompt": [5, 6, 7], "max_tokens": 1500, "stream": True}
    async with http.stream("POST", "/v1/completions", json=body) as response:
        async for _ in response.aiter_lines():
            break
    with trio.fail_after(60):
        while tiny_engine.load().running:
            await trio.sleep(0.01)
    assert tiny_engine.statistics().tokens_generated - before < 200


@pytest.mark.trio
async def test_chat_logprobs_name_tokens_by_their_text_and_bytes(api, tiny_engine):
    """Logprobs carried the token id as text (token '89', the bytes of the digits)."""
    http, _ = api
    body = {
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 3,
    }
    answer = (await http.post("/v1/chat/completions", json=body)).json()
    choice = answer["choices"][0]
    content = choice["logprobs"]["content"]
    assert "".join(entry["token"] for entry in content) == choice["message"]["content"]
    for entry in content:
        assert entry["bytes"] == list(entry["token"].encode())
        alternatives = [alt["token"] for alt in entry["top_logprobs"]]
        assert len(alternatives) == 3 and entry["token"] in alternatives  # greedy: the best is the chosen


@pytest.mark.trio
async def test_another_model_is_a_404_and_unserved_parameters_a_400_naming_them(api):
    """The node's local API answered any `model` and silently ignored n, tools and response_format."""
    http, _ = api
    chat = [{"role": "user", "content": "hi"}]
    for model in ("gpt-4o", "/home/me/models/other", "ab" * 32):
        response = await http.post("/v1/chat/completions", json={"model": model, "messages": chat})
        assert response.status_code == 404, model
        error = response.json()["error"]
        assert error["param"] == "model" and "dolphin-tiny-llama" in error["message"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "model_not_found")  # OpenAI's
    for model in ("dolphin-tiny-llama", "05" * 32):
        response = await http.post("/v1/completions", json={"model": model, "prompt": "hi", "max_tokens": 1})
        assert response.status_code == 200, model
    for extra, param in [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ]:
        response = await http.post("/v1/chat/completions", json={"messages": chat, "max_tokens": 1} | extra)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, extra
