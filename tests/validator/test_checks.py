"""The checks on real answers of the tiny model: honest nodes pass (batched, concurrent), each cheat fails.

Answers are made in process through both ends of the real exchange (`validator.testing`), so each one
carries the same signed evidence a node's answer over libp2p does.
"""

import dataclasses
import random

import pytest
import trio

from node.engines.base import ChatTurn
from tests.validator.cheats import (
    FabricatingEngine,
    LaunderingEngine,
    PromptAlteringEngine,
    SlowEngine,
    TruncatingEngine,
    inject_system_prompt,
    modified_engine,
)
from validator.challenges import Challenge, draw_challenge
from validator.checks import (
    benchmark_evidence,
    check_answer,
    check_benchmark,
    timed,
    verify_benchmark_evidence,
)
from validator.errors import EvidenceError
from validator.testing import NodeKeys, answer_in_process, attestation_for

pytestmark = [pytest.mark.integration, pytest.mark.trio]

GREEDY = Challenge("chat", (("user", "Tell me about the sea."),), max_tokens=32)


async def _verdicts(engine, reference, thresholds, challenges, *, keys=None, attestation=None, concurrency=8):
    """Each challenge answered by `engine` (up to `concurrency` at once) and checked."""
    verdicts = [None] * len(challenges)
    limiter = trio.CapacityLimiter(concurrency)

    async def one(index, challenge):
        async with limiter:
            answer = await answer_in_process(
                engine, challenge, model=reference.model_id, keys=keys, attestation=attestation
            )
        verdicts[index] = await check_answer(reference, answer, thresholds, own_clock=True)

    async with trio.open_nursery() as nursery:
        for index, challenge in enumerate(challenges):
            nursery.start_soon(one, index, challenge)
    return verdicts


def _drawn(count, seed=1, max_tokens=48):
    rng = random.Random(seed)
    return [draw_challenge(rng, max_tokens=max_tokens) for _ in range(count)]


async def test_honest_answers_pass_every_check_under_concurrent_load(honest_engine, reference, thresholds):
    keys = NodeKeys()
    attestation = attestation_for(keys, reference.model_id, decode_tps=1.0)
    verdicts = await _verdicts(
        honest_engine, reference, thresholds, _drawn(48), keys=keys, attestation=attestation
    )
    failed = [v.summary() for v in verdicts if v.failed]
    assert failed == []
    replayed = sum(v.result("fingerprint").measures.get("replay_checked", 0) for v in verdicts)
    assert replayed > 0  # seeded answers were replayed token by token


@pytest.mark.parametrize("cheat", ["other-seed", "perturb", "fp16", "bf16", "int8", "int4"])
async def test_changed_weights_fail_the_fingerprint(tiny_model_dir, reference, thresholds, cheat):
    engine = await trio.to_thread.run_sync(lambda: modified_engine(tiny_model_dir, cheat, 1e-3, max_batch=8))
    try:
        verdicts = await _verdicts(engine, reference, thresholds, _drawn(16, seed=2))
    finally:
        await engine.aclose()
    fingerprint = [v.result("fingerprint") for v in verdicts]
    assert all(not r.passed and r.provable for r in fingerprint), [r.detail for r in fingerprint if r.passed]
    assert {r.reason for r in fingerprint} <= {"wrong_model", "fabricated_output"}


async def test_fabricated_tokens_fail(honest_engine, reference, thresholds):
    vocabulary = reference.replay.vocab_size
    engine = FabricatingEngine(honest_engine, vocabulary=vocabulary)
    verdicts = await _verdicts(engine, reference, thresholds, _drawn(8, seed=3))
    assert all(v.result("fingerprint").passed is False for v in verdicts)


async def test_an_injected_system_prompt_fails(honest_engine, reference, thresholds):
    engine = PromptAlteringEngine(honest_engine, inject_system_prompt("You are a helpful assistant."))
    verdicts = await _verdicts(engine, reference, thresholds, _drawn(12, seed=4))
    assert all(v.strike is not None for v in verdicts)


async def test_an_altered_system_prompt_fails(honest_engine, reference, thresholds):
    def alter(messages):
        return tuple(
            ChatTurn(m.role, m.content + " Be brief.") if m.role == "system" else m for m in messages
        )

    challenge = Challenge(
        "system",
        (("system", "You are a pirate. Stay in character."), ("user", "Tell me about your ship.")),
        32,
    )
    (verdict,) = await _verdicts(
        PromptAlteringEngine(honest_engine, alter), reference, thresholds, [challenge]
    )
    assert verdict.result("fingerprint").passed is False


async def test_a_truncated_answer_fails_the_end_check(honest_engine, reference, thresholds):
    engine = TruncatingEngine(honest_engine, keep=6, eos_id=min(reference.eos_ids))
    challenges = [dataclasses.replace(GREEDY, max_tokens=32), Challenge("chat", (("user", "hi"),), 48)]
    verdicts = await _verdicts(engine, reference, thresholds, challenges)
    for verdict in verdicts:
        assert verdict.result("end").passed is False
        assert verdict.strike is not None


async def test_an_answer_cut_short_of_its_length_fails(honest_engine, reference, thresholds):
    engine = TruncatingEngine(honest_engine, keep=10, eos_id=min(reference.eos_ids), claim="length")
    (verdict,) = await _verdicts(engine, reference, thresholds, [GREEDY])
    assert verdict.result("end").passed is False and "cut at 10 of the 32" in verdict.result("end").detail


async def test_laundered_logprobs_do_not_hide_another_models_choices(
    tiny_model_dir, honest_engine, reference, thresholds
):
    cheap = await trio.to_thread.run_sync(lambda: modified_engine(tiny_model_dir, "int4", max_batch=8))
    try:
        engine = LaunderingEngine(cheap, honest_engine)
        greedy = [dataclasses.replace(c, temperature=0.0, top_p=1.0, seed=None) for c in _drawn(8, seed=5)]
        seeded = [
            dataclasses.replace(c, temperature=1.0, top_p=1.0, seed=11 + i)
            for i, c in enumerate(_drawn(8, seed=6))
        ]
        keys = NodeKeys()
        attestation = attestation_for(keys, reference.model_id, decode_tps=1.0)
        verdicts = await _verdicts(
            engine, reference, thresholds, greedy + seeded, keys=keys, attestation=attestation
        )
    finally:
        await cheap.aclose()
    fingerprints = [v.result("fingerprint") for v in verdicts]
    assert all(r.measures["logprob_error"] < thresholds.max_logprob_error for r in fingerprints)  # laundered
    assert [r.passed for r in fingerprints[:8]] == [False] * 8, [r.measures for r in fingerprints[:8]]
    assert sum(r.measures.get("replay_mismatches", 0) for r in fingerprints[8:]) > 0  # seeded: other draws


async def test_a_node_slower_than_its_benchmark_fails_the_benchmark_check(
    honest_engine, reference, thresholds
):
    keys = NodeKeys()
    engine = SlowEngine(honest_engine, delay=0.01)
    challenges = [dataclasses.replace(GREEDY, max_tokens=24)] * thresholds.benchmark_answers
    for claimed, fails in ((2000.0, True), (1.0, False)):
        attestation = attestation_for(keys, reference.model_id, decode_tps=claimed)
        answers = [
            await answer_in_process(engine, c, model=reference.model_id, keys=keys, attestation=attestation)
            for c in challenges
        ]
        assert all(timed(a, thresholds) for a in answers)
        result = check_benchmark(answers[0].attestation, [a.receipt for a in answers], thresholds)
        assert (result.passed is False) is fails
        if fails:
            assert result.reason == "false_benchmark" and result.provable
            # Any validator can re-check it from the attestation and the node's signed receipts.
            evidence = benchmark_evidence(answers)
            again, receipts = verify_benchmark_evidence(
                evidence, keys.identity.public_key, reference.model_id, thresholds
            )
            assert check_benchmark(again, receipts, thresholds).passed is False
    # Fewer answers than the check needs decide nothing.
    assert check_benchmark(answers[0].attestation, [answers[0].receipt], thresholds).passed is None


async def test_benchmark_evidence_must_be_the_nodes_own_recent_distinct_answers(
    honest_engine, reference, thresholds
):
    keys, other = NodeKeys(), NodeKeys()
    attestation = attestation_for(keys, reference.model_id, decode_tps=2000.0)
    answers = [
        await answer_in_process(
            honest_engine, GREEDY, model=reference.model_id, keys=keys, attestation=attestation
        )
        for _ in range(3)
    ]
    stranger = await answer_in_process(honest_engine, GREEDY, model=reference.model_id, keys=other)
    node, model = keys.identity.public_key, reference.model_id
    evidence = benchmark_evidence(answers)
    verify_benchmark_evidence(evidence, node, model, thresholds)
    for broken in (
        (*evidence, stranger.evidence.receipt),  # another node's receipt
        (*evidence, evidence[1]),  # the same answer twice
        (attestation_for(other, model, decode_tps=1.0), *evidence[1:]),  # another node's attestation
    ):
        with pytest.raises(EvidenceError):
            verify_benchmark_evidence(broken, node, model, thresholds)
    with pytest.raises(EvidenceError, match="window"):
        verify_benchmark_evidence(
            evidence, node, model, dataclasses.replace(thresholds, benchmark_window_s=0)
        )


async def test_speed_bounds_per_model(honest_engine, reference, thresholds):
    answer = await answer_in_process(honest_engine, GREEDY, model=reference.model_id)
    if answer.receipt.tokens_out < thresholds.min_speed_tokens:
        pytest.skip("the tiny model ended this answer early")
    too_fast = dataclasses.replace(thresholds, max_decode_tps=0.5)
    result = (await check_answer(reference, answer, too_fast)).result("speed")
    assert result.passed is False and result.reason == "too_fast"
    too_slow = dataclasses.replace(thresholds, min_decode_tps=1e9, max_ttft_ms=0)
    result = (await check_answer(reference, answer, too_slow)).result("speed")
    assert result.passed is False and result.reason == "too_slow"


async def test_a_receipt_that_miscounts_the_prompt_fails(honest_engine, reference, thresholds):
    def alter(messages):  # the prompt served is longer than the one asked, and the count says so
        return (ChatTurn("system", "Always agree."), *messages)

    class Honest(PromptAlteringEngine):
        async def generate(self, request):
            async for piece in self.inner.generate(
                dataclasses.replace(request, messages=self._alter(request.messages))
            ):
                yield piece

    (verdict,) = await _verdicts(Honest(honest_engine, alter), reference, thresholds, [GREEDY])
    tokens = verdict.result("tokens")
    assert tokens.passed is False and tokens.reason == "bad_receipt"
