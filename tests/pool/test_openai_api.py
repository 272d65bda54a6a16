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
