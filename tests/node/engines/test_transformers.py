"""The in-process transformers engine: batched answers equal one-at-a-time answers, streaming, scoring."""

import contextlib
import random

import pytest
import trio

from node.engines import ChatTurn, EngineRequestError, GenerationRequest, Priority
from node.engines.transformers import TransformersEngine, _TextStream

PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea, the waves and the moon.",
    "Hello!",
    "Explain why the sky is blue.",
    "def add(a, b):",
    "How many legs does a spider have?",
)


async def _answer(engine, request):
    pieces = [piece async for piece in engine.generate(request)]
    ids = [i for p in pieces for i in p.token_ids]
    logprobs = [lp for p in pieces for lp in p.logprobs]
    return pieces, ids, logprobs


def _varied_requests(count: int, **fields) -> list[GenerationRequest]:
    """Chats and raw prompts of different lengths (so batched rows are padded differently)."""
    rng = random.Random(5)
    requests = [GenerationRequest(messages=(ChatTurn("user", p),), **fields) for p in PROMPTS]
    while len(requests) < count:
        ids = tuple(rng.randrange(3, 600) for _ in range(rng.randrange(4, 90)))
        requests.append(GenerationRequest(prompt_ids=ids, **fields))
    return requests[:count]


async def _one_at_a_time_and_batched(engine, requests):
    alone = [await _answer(engine, r) for r in requests]
    together: list = [None] * len(requests)

    async def run(index: int) -> None:
        together[index] = await _answer(engine, requests[index])

    async with trio.open_nursery() as nursery:
        for index in range(len(requests)):
            nursery.start_soon(run, index)
            await trio.sleep(0.003 * (index % 3))  # some join a batch that is already decoding
    return alone, together


@pytest.mark.integration
@pytest.mark.trio
async def test_a_streamed_answer_carries_ids_logprobs_text_and_counts(tiny_engine):
    request = GenerationRequest(messages=(ChatTurn("user", PROMPTS[0]),), max_tokens=12, top_logprobs=3)
    pieces, ids, logprobs = await _answer(tiny_engine, request)
    assert len(ids) == len(logprobs) == 12
    assert all(lp <= 0 for lp in logprobs)
    assert "".join(p.text for p in pieces) == await tiny_engine.detokenize(ids)
    assert [p.finish_reason for p in pieces[:-1]] == [None] * (len(pieces) - 1)
    assert pieces[-1].finish_reason == "length"
    assert pieces[-1].prompt_tokens == len(await tiny_engine.tokenize_chat(request.messages))
    tops = [top for p in pieces for top in p.top_logprobs]
    assert len(tops) == 12 and all(len(t) == 3 for t in tops)
    for chosen, logprob, top in zip(ids, logprobs, tops, strict=True):
        assert top[0][1] >= top[1][1] >= top[2][1]
        assert chosen == top[0][0] and logprob == pytest.approx(top[0][1])  # greedy: the best token


@pytest.mark.integration
@pytest.mark.trio
async def test_greedy_answers_in_a_batch_equal_one_at_a_time_answers(tiny_engine):
    requests = _varied_requests(12, max_tokens=24)
    alone, together = await _one_at_a_time_and_batched(tiny_engine, requests)
    for (_, ids_alone, lp_alone), (_, ids_together, lp_together) in zip(alone, together, strict=True):
        assert ids_together == ids_alone
        # Rows of a batch may sum in another order than one row alone: equal ids, logprobs to float noise.
        assert lp_together == pytest.approx(lp_alone, abs=1e-4)
    assert len({tuple(ids) for _, ids, _ in alone}) > 6  # different prompts, different answers


@pytest.mark.integration
@pytest.mark.trio
async def test_seeded_sampling_is_reproducible_in_and_out_of_a_batch(tiny_engine):
    requests = _varied_requests(6, max_tokens=16, temperature=1.0, top_p=0.9, seed=7)
    alone, together = await _one_at_a_time_and_batched(tiny_engine, requests)
    assert [ids for _, ids, _ in alone] == [ids for _, ids, _ in together]
    first = requests[0]
    reseeded = GenerationRequest(messages=first.messages, max_tokens=16, temperature=1.0, top_p=0.9, seed=8)
    assert (await _answer(tiny_engine, reseeded))[1] != alone[0][1]
    assert len(set(alone[0][1])) > 1  # sampling, not the greedy repetition of the random model


@pytest.mark.integration
@pytest.mark.trio
async def test_the_end_of_sequence_token_ends_the_answer_and_is_reported(tiny_model_dir):
    # A random model rarely chooses its EOS token, so this engine takes the greedy answer's third token as
    # its end of sequence (the id a model's generation config names): the answer must stop right there.
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(tiny_model_dir, max_batch=2))
    try:
        request = GenerationRequest(prompt_ids=(5, 9, 13, 21), max_tokens=8)
        _, free, _ = await _answer(engine, request)
        engine.eos_ids = frozenset({free[2]})
        pieces, ids, logprobs = await _answer(engine, request)
        end = free.index(free[2]) + 1
        assert ids == free[:end] and len(logprobs) == end
        assert pieces[-1].finish_reason == "stop" and pieces[-1].token_ids[-1] == free[2]
    finally:
        await engine.aclose()


@pytest.mark.integration
@pytest.mark.trio
async def test_a_trailing_assistant_message_is_continued_not_answered(tiny_engine):
    chat = (ChatTurn("user", "What is the capital of France?"), ChatTurn("assistant", "The capital is"))
    ids = await tiny_engine.tokenize_chat(chat)
    text = tiny_engine.tokenizer.decode(ids, skip_special_tokens=False)
    assert text.endswith("<|im_start|>assistant\nThe capital is")
    answered = await tiny_engine.tokenize_chat(chat[:1])
    assert tiny_engine.tokenizer.decode(answered, skip_special_tokens=False).endswith(
        "<|im_start|>assistant\n"
    )


@pytest.mark.integration
def test_text_stream_holds_back_broken_characters_and_stop_strings(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "The capital of France is Paris. Café 🐬 ends here"
    ids = tokenizer.encode(text, add_special_tokens=False)
    stream, deltas = _TextStream(tokenizer, ()), []
    for index, token in enumerate(ids):
        delta, stopped = stream.add([token], final=index == len(ids) - 1)
        assert not stopped and "\ufffd" not in delta
        deltas.append(delta)
    assert "".join(deltas) == text

    stream, out = _TextStream(tokenizer, (" Paris", "🐬")), []
    for token in ids:
        delta, stopped = stream.add([token], final=False)
        out.append(delta)
        if stopped:
            break
    assert stopped and "".join(out) == "The capital of France is"


@pytest.mark.integration
@pytest.mark.trio
async def test_leaving_an_answer_early_frees_its_slot(tiny_engine):
    # ignore_eos: left alone, this answer runs to all 1,500 tokens; leaving must stop it within a few.
    request = GenerationRequest(prompt_ids=(7, 8, 9), max_tokens=1500, ignore_eos=True)
    before = tiny_engine.statistics().tokens_generated
    async with contextlib.aclosing(tiny_engine.generate(request)) as pieces:
        async for _ in pieces:
            break
    with trio.fail_after(60):
        while tiny_engine.load().running:
            await trio.sleep(0.01)
    assert tiny_engine.statistics().tokens_generated - before < 100


@pytest.mark.integration
@pytest.mark.trio
async def test_ignore_eos_answers_run_to_max_tokens(tiny_engine):
    request = GenerationRequest(prompt_ids=(7, 8, 9), max_tokens=300, ignore_eos=True)
    pieces = [piece async for piece in tiny_engine.generate(request)]
    assert sum(len(piece.token_ids) for piece in pieces) == 300
    assert pieces[-1].finish_reason == "length"


@pytest.mark.integration
@pytest.mark.trio
async def test_local_requests_go_ahead_of_waiting_network_requests(tiny_model_dir):
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(tiny_model_dir, max_batch=1))
    order: list[str] = []

    async def ask(name: str, priority: int, max_tokens: int) -> None:
        request = GenerationRequest(prompt_ids=(11, 12, 13), max_tokens=max_tokens, priority=priority)
        async for piece in engine.generate(request):
            if piece.token_ids and name not in order:
                order.append(name)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first", Priority.NETWORK, 200)  # holds the only slot for a while
            with trio.fail_after(10):
                while not order:
                    await trio.sleep(0.005)
            nursery.start_soon(ask, "network", Priority.NETWORK, 4)
            await trio.sleep(0.02)
            nursery.start_soon(ask, "local", Priority.LOCAL, 4)
            with trio.fail_after(10):
                while engine.load().waiting < 2:
                    await trio.sleep(0.002)
        assert order == ["first", "local", "network"]
    finally:
        await engine.aclose()


@pytest.mark.integration
@pytest.mark.trio
async def test_scoring_an_answer_gives_its_logprobs_and_ranks(tiny_engine):
    prompt = await tiny_engine.tokenize_chat([ChatTurn("user", PROMPTS[1])])
    _, ids, logprobs = await _answer(tiny_engine, GenerationRequest(prompt_ids=tuple(prompt), max_tokens=10))
    scored = await tiny_engine.score(prompt, ids, top=4)
    assert [s.token_id for s in scored] == ids
    assert [s.rank for s in scored] == [1] * len(ids)  # greedy tokens are the most likely ones
    assert [s.logprob for s in scored] == pytest.approx(logprobs, abs=1e-4)
    assert all(len(s.top) == 4 and s.top[0][0] == s.token_id for s in scored)
    unlikely = [min(range(600), key=lambda t: t in ids)] * 3
    ranks = [s.rank for s in await tiny_engine.score(prompt, unlikely)]
    assert all(rank > 1 for rank in ranks)


@pytest.mark.integration
@pytest.mark.trio
async def test_requests_the_engine_cannot_serve_are_refused_with_a_reason(tiny_engine):
    limit = tiny_engine.max_model_len
    too_long = GenerationRequest(prompt_ids=tuple([5] * limit), max_tokens=4)
    with pytest.raises(EngineRequestError, match=f"at most {limit - 1}"):
        await _answer(tiny_engine, too_long)
    with pytest.raises(EngineRequestError, match="token ids must be in"):
        await _answer(tiny_engine, GenerationRequest(prompt_ids=(5, 10**6), max_tokens=4))
    with pytest.raises(EngineRequestError, match="max_tokens"):
        GenerationRequest(prompt_ids=(5,), max_tokens=0)
    assert tiny_engine.load().healthy


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.trio
async def test_smollm2_greedy_answers_in_a_batch_equal_one_at_a_time_and_transformers_generate(
    smollm2_model_dir,
):
    import torch

    engine = await trio.to_thread.run_sync(
        lambda: TransformersEngine.open(smollm2_model_dir, max_batch=8, verify=False)
    )
    try:
        requests = _varied_requests(len(PROMPTS), max_tokens=20)
        alone, together = await _one_at_a_time_and_batched(engine, requests)
        assert [ids for _, ids, _ in together] == [ids for _, ids, _ in alone]
        assert "Paris" in "".join(p.text for p in alone[0][0])
        model, tokenizer = engine.model, engine.tokenizer
        for request, (_, ids, _) in zip(requests, alone, strict=True):
            prompt = await engine.tokenize_chat(request.messages)
            with torch.inference_mode():
                generated = model.generate(
                    torch.tensor([prompt]),
                    attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                    max_new_tokens=20,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            assert generated[0, len(prompt) :].tolist() == ids
    finally:
        await engine.aclose()
