"""OpenAI request parsing and answer shaping shared by the local API and the gateway (pure)."""

import pytest

from pool.openai_api import CompletionShaper, OpenAIError, parse_messages, parse_prompt, parse_sampling

pytestmark = pytest.mark.unit


def test_sampling_parameters_are_checked_and_defaulted():
    sampling = parse_sampling({}, max_tokens_limit=100)
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.stop) == (100, 1.0, 1.0, ())
    sampling = parse_sampling(
        {
            "max_completion_tokens": 5,
            "stop": "END",
            "seed": 3,
            "logprobs": True,
            "top_logprobs": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        max_tokens_limit=100,
    )
    assert (sampling.max_tokens, sampling.stop, sampling.seed, sampling.top_logprobs) == (5, ("END",), 3, 2)
    assert sampling.logprobs and sampling.stream and sampling.include_usage
    legacy = parse_sampling({"logprobs": 3}, max_tokens_limit=10)  # completions' old form: a count
    assert legacy.logprobs and legacy.top_logprobs == 3
    for body, param in [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 101}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"stop": [""]}, "stop"),
        ({"stop": ["a"] * 17}, "stop"),
        ({"seed": -1}, "seed"),
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ({"logprobs": "yes"}, "logprobs"),
        ({"stream_options": []}, "stream_options"),
    ]:
        with pytest.raises(OpenAIError) as raised:
            parse_sampling(body, max_tokens_limit=100)
        assert raised.value.status == 400 and raised.value.param == param, body


def test_messages_and_prompts():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]}
    assert parse_messages(body) == (("user", "ab"),)
    for bad in (
        {},
        {"messages": []},
        {"messages": [{"role": "god", "content": "x"}]},
        {"messages": [{"role": "user", "content": 5}]},
    ):
        with pytest.raises(OpenAIError):
            parse_messages(bad)
    assert parse_prompt({"prompt": "hi"}) == "hi" and parse_prompt({"prompt": [1, 2]}) == (1, 2)
    with pytest.raises(OpenAIError):
        parse_prompt({"prompt": ""})


def test_chunks_and_completions_have_openais_shape():
    shaper = CompletionShaper("chat", "m", logprobs=True, include_usage=True, token_text=lambda t: f"<{t}>")
    chunk = shaper.chunk("hi", token_ids=(5,), logprobs=(-0.5,), top_logprobs=(((5, -0.5), (6, -2.0)),))
    assert chunk["object"] == "chat.completion.chunk" and chunk["usage"] is None
    (entry,) = chunk["choices"][0]["logprobs"]["content"]
    assert entry["token"] == "<5>" and entry["bytes"] == list(b"<5>")
    assert [t["token"] for t in entry["top_logprobs"]] == ["<5>", "<6>"]
    usage = shaper.usage_chunk(3, 1)
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
    }
    whole = CompletionShaper("completion", "m").completion("text", "stop", 3, 1, None)
    assert whole["object"] == "text_completion" and whole["choices"][0]["text"] == "text"
    assert whole["choices"][0]["logprobs"] is None and whole["id"].startswith("cmpl-")
    error = OpenAIError(413, "too big").body()["error"]
    assert error == {"message": "too big", "type": "invalid_request_error", "param": None, "code": None}


def test_what_the_network_does_not_serve_is_refused_naming_the_parameter():
    """OpenAI clients send these expecting them honoured; ignoring them silently gives a wrong answer."""
    for body, param in [
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"response_format": "json"}, "response_format"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
    ]:
        with pytest.raises(OpenAIError) as refused:
            parse_sampling(body, max_tokens_limit=10)
        assert refused.value.status == 400 and refused.value.param == param, body
    served = {
        "n": 1,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "logit_bias": {},
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
    }
    assert parse_sampling(served, max_tokens_limit=10).max_tokens == 10


def test_legacy_completions_carry_logprobs_in_their_own_shape_with_text_offsets():
    shaper = CompletionShaper("completion", "m", logprobs=True, token_text={5: "Hel", 6: "lo", 7: "!"}.get)
    first = shaper.chunk("Hel", token_ids=(5,), logprobs=(-0.5,), top_logprobs=(((5, -0.5), (7, -2.0)),))
    second = shaper.chunk("lo", token_ids=(6,), logprobs=(-0.25,), top_logprobs=(((6, -0.25), (5, -3.0)),))
    assert first["choices"][0]["logprobs"] == {
        "tokens": ["Hel"],
        "token_logprobs": [-0.5],
        "top_logprobs": [{"Hel": -0.5, "!": -2.0}],
        "text_offset": [0],
    }
    assert second["choices"][0]["logprobs"]["text_offset"] == [3]  # counted across the stream
    assert "content" not in second["choices"][0]["logprobs"]


def test_without_a_tokenizer_a_one_token_piece_names_its_token_by_its_text():
    """A gateway has no tokenizer: the piece's text names a lone token; others use vLLM's token_id:N form."""
    shaper = CompletionShaper("chat", "m", logprobs=True)
    (entry,) = shaper.chunk("é", token_ids=(89,), logprobs=(-0.1,), top_logprobs=(((89, -0.1), (4, -3.0)),))[
        "choices"
    ][0]["logprobs"]["content"]
    assert entry["token"] == "é" and entry["bytes"] == list("é".encode())
    assert entry["top_logprobs"][0]["token"] == "é"
    assert entry["top_logprobs"][1] == {"token": "token_id:4", "logprob": -3.0, "bytes": None}
    pair = shaper.logprobs_content((1, 2), (-0.1, -0.2), (), "ab")
    assert [e["token"] for e in pair] == ["token_id:1", "token_id:2"] and pair[0]["bytes"] is None
