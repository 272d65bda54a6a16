"""validation: how well the checks catch each cheat, how often they wrong honest nodes, what a check costs.

For each model and each cheat (type and strength): challenges drawn as the validator draws them are
answered by the cheating engine, and every answer is checked against the reference as a validator does
(`check_answer`, thresholds as calibrated). Reported per cheat:
- detection per challenge: the share of answers with a provable failure (what a strike report needs),
  among the answers the cheat changed (a truncation longer than the answer, or an answer too short to
  time, changes nothing: `applicable` counts the others);
- detection per node after K challenges: 1 - (1 - p)^K for K = 3 and 10 (challenges are independent
  draws), beside which check caught it;
- and for honest nodes (the transformers engine batching 8 answers at once, under concurrent load) the
  false-positive rate: answers with any failure, provable or not.
A speed lie (an attestation claiming more than the node delivers) is judged per node, on groups of
`benchmark_answers` timed answers (`check_benchmark`): its rows count groups, and so does the honest
`benchmark_false_positives`.
Cost: the time of one check ÷ the time of generating the same answer alone, on answers of the honest
engine one at a time (median; goal ≤ 0.2).

Everything runs in this process without a network (`validator.testing.answer_in_process` runs both ends of
the real exchange, so answers carry the same signed evidence as over libp2p): the network adds nothing the
checks look at except timings, which the speed cheat's rows cover through attestations. Models:
$DOLPHIN_BENCH_VALIDATION_MODELS (comma-separated, default "tiny,smollm2"), prepared under .devdata/models
as the demo does; challenges per cheat: $DOLPHIN_BENCH_VALIDATION_CHALLENGES (default 100 for the tiny
model, 24 for SmolLM2, which this CPU generates slowly).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from cli.demo import prepare_model
from node.benchmark import BenchmarkResult, BenchmarkSettings, attestations, run_benchmark
from node.engines.base import ChatTurn, Engine
from node.engines.transformers import TransformersEngine
from tests.bench.calibrate_checks import EVALUATION_PROMPTS, EVALUATION_SEED
from tests.validator.cheats import (
    FabricatingEngine,
    LaunderingEngine,
    PromptAlteringEngine,
    TruncatingEngine,
    inject_system_prompt,
    modified_engine,
)
from validator.answers import Answer
from validator.calibration import thresholds_for
from validator.challenges import draw_challenge
from validator.checks import CheckResult, Verdict, check_answer, check_benchmark, timed
from validator.reference import Reference, reference_from_engine
from validator.testing import CPU, NodeKeys, answer_in_process

MODELS_DIR = Path(".devdata/models")
DEFAULT_CHALLENGES = {"tiny": 100, "smollm2": 24}
MAX_TOKENS = {"tiny": 64, "smollm2": 48}
CONCURRENCY = 8
K = (3, 10)


@dataclass
class Cheat:
    name: str
    strength: str
    open: Callable[[], Engine]  # blocking
    close: bool = True  # whether the engine is the cheat's own (closed after)
    attestation_factor: float = 1.0  # how much faster than measured the node's attestation claims
    applies: Callable[[Answer, Verdict], bool] = lambda answer, verdict: True
    """Whether the cheat changed this answer (a truncation shorter than the answer, a timed answer)."""


def _append_to_system(messages: tuple[ChatTurn, ...]) -> tuple[ChatTurn, ...]:
    if not any(m.role == "system" for m in messages):
        return (ChatTurn("system", "Be brief."), *messages)
    return tuple(ChatTurn(m.role, m.content + " Be brief.") if m.role == "system" else m for m in messages)


def _cheats(model_dir: Path, honest: TransformersEngine, reference: Reference, full: bool) -> list[Cheat]:
    def weights(kind: str, strength: float = 1e-3) -> Callable[[], Engine]:
        return lambda: modified_engine(model_dir, kind, strength, max_batch=CONCURRENCY)

    eos = min(reference.eos_ids)
    cheats = [
        Cheat("substituted model", "another seed", weights("other-seed")),
        *(
            Cheat("perturbed weights", f"{s:g} x std", weights("perturb", s))
            for s in (1e-3, 1e-4, 3e-5, 1e-5)
        ),
        Cheat("quantized weights", "fp16", weights("fp16")),
        Cheat("quantized weights", "bf16", weights("bf16")),
        Cheat("quantized weights", "int8 per row", weights("int8")),
        Cheat("quantized weights", "int4 per 32", weights("int4")),
        Cheat(
            "fabricated tokens",
            "random",
            lambda: FabricatingEngine(honest, vocabulary=reference.replay.vocab_size),  # type: ignore[union-attr]
            close=False,
        ),
        Cheat(
            "system prompt",
            "injected",
            lambda: PromptAlteringEngine(honest, inject_system_prompt("You are a helpful assistant.")),
            close=False,
        ),
        Cheat(
            "system prompt", "altered", lambda: PromptAlteringEngine(honest, _append_to_system), close=False
        ),
        Cheat(
            "truncated",
            "8 tokens + EOS",
            lambda: TruncatingEngine(honest, keep=8, eos_id=eos),
            close=False,
            applies=lambda answer, _: len(answer.token_ids) == 9 and answer.token_ids[-1] == eos,
        ),
        Cheat(
            "truncated",
            "24 tokens, 'length'",
            lambda: TruncatingEngine(honest, keep=24, eos_id=eos, claim="length"),
            close=False,
            applies=lambda answer, _: answer.finish_reason == "length" and len(answer.token_ids) == 24,
        ),
        *(
            Cheat(
                "speed lie",
                f"claims {f:g}x",
                lambda: honest,
                close=False,
                attestation_factor=f,
                applies=lambda _, verdict: verdict.result("speed").passed is not None,
            )
            for f in (2.0, 4.0, 10.0)
        ),
    ]
    if full:
        cheap = weights("int4")
        cheats.append(
            Cheat("laundered logprobs", "int4 generator", lambda: LaunderingEngine(cheap(), honest))
        )
    return cheats


async def _answers(engine: Engine, reference: Reference, challenges, keys, attestation) -> list:  # type: ignore[no-untyped-def]
    """(answer, verdict) of each challenge, `CONCURRENCY` answered at once."""
    thresholds = thresholds_for(reference.name)
    pairs: list = [None] * len(challenges)
    limiter = trio.CapacityLimiter(CONCURRENCY)

    async def one(index: int, challenge) -> None:  # type: ignore[no-untyped-def]
        async with limiter:
            answer = await answer_in_process(
                engine, challenge, model=reference.model_id, keys=keys, attestation=attestation
            )
        pairs[index] = (answer, await check_answer(reference, answer, thresholds, own_clock=True))

    async with trio.open_nursery() as nursery:
        for index, challenge in enumerate(challenges):
            nursery.start_soon(one, index, challenge)
    return pairs


def _summary(verdicts: list[Verdict], answered: int) -> dict:
    errors = sorted(v.result("fingerprint").measures.get("logprob_error", 0.0) for v in verdicts)
    count = len(verdicts)
    detected = sum(v.strike is not None for v in verdicts)
    rate = detected / count if count else 0.0
    caught_by = Counter(v.strike.name for v in verdicts if v.strike is not None)
    return {
        "challenges": answered,
        "applicable": count,
        "detected": detected,
        "per_challenge": round(rate, 4),
        **{f"per_node_after_{k}": round(1 - (1 - rate) ** k, 4) for k in K},
        "caught_by": dict(caught_by),
        "logprob_error_min": errors[0] if errors else None,
        "logprob_error_median": errors[len(errors) // 2] if errors else None,
    }


def _groups(pairs: list, reference: Reference) -> list[CheckResult]:
    """`check_benchmark` over consecutive groups of a node's timed answers, as a validator judges it."""
    thresholds = thresholds_for(reference.name)
    answers = [answer for answer, _ in pairs if timed(answer, thresholds)]
    size = thresholds.benchmark_answers
    return [
        check_benchmark(group[0].attestation, [a.receipt for a in group], thresholds)
        for group in (answers[i : i + size] for i in range(0, len(answers) - size + 1, size))
    ]


def _benchmark_summary(pairs: list, reference: Reference) -> dict:
    """A speed lie is judged per node on `benchmark_answers` timed answers: detection per such group."""
    results = _groups(pairs, reference)
    detected = sum(r.passed is False for r in results)
    rate = detected / len(results) if results else 0.0
    return {
        "challenges": len(pairs),
        "applicable": len(results),
        "detected": detected,
        "per_challenge": None,
        "per_node_after_6": round(rate, 4),
        "caught_by": {"benchmark": detected},
    }


async def _benchmark(engine: Engine) -> BenchmarkResult:
    """The engine's self-benchmark, as `dolphin node` measures it at start."""
    return await run_benchmark(
        engine, "bench", BenchmarkSettings(prompt_tokens=64, output_tokens=16, streams=CONCURRENCY)
    )


def _attestation(
    result: BenchmarkResult, engine: Engine, keys: NodeKeys, model: bytes, factor: float
) -> bytes:
    """The node's signed N-stream attestation of `result`, speeds multiplied by `factor` (a lie if > 1)."""
    claimed = dataclasses.replace(
        result, decode_tps=result.decode_tps * factor, decode_tps_streams=result.decode_tps_streams * factor
    )
    return attestations(claimed, keys.identity, model=model, engine=engine, hardware=CPU)[1]


async def _cost(reference: Reference, challenges) -> dict:  # type: ignore[no-untyped-def]
    """Check time ÷ generation time of the same answer, one answer at a time (greedy challenges)."""
    thresholds = thresholds_for(reference.name)
    ratios, generation, checking = [], [], []
    for challenge in challenges:
        started = time.perf_counter()
        answer = await answer_in_process(reference.engine, challenge, model=reference.model_id)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        await check_answer(reference, answer, thresholds)
        checked = time.perf_counter() - started
        ratios.append(checked / generated)
        generation.append(generated)
        checking.append(checked)
    return {
        "answers": len(ratios),
        "median_check_over_generation": round(statistics.median(ratios), 4),
        "max_check_over_generation": round(max(ratios), 4),
        "median_generation_s": round(statistics.median(generation), 4),
        "median_check_s": round(statistics.median(checking), 4),
    }


async def _bench_model(name: str, model_dir: Path, count: int) -> dict:
    reference = reference_from_engine(
        await trio.to_thread.run_sync(lambda: TransformersEngine.open(model_dir, max_batch=1))
    )
    honest = await trio.to_thread.run_sync(lambda: TransformersEngine.open(model_dir, max_batch=CONCURRENCY))
    rng = random.Random(EVALUATION_SEED)  # never the calibration's draws (calibrate_checks)
    honest_count = count * (3 if name == "tiny" else 1)
    drawn = [
        draw_challenge(rng, max_tokens=MAX_TOKENS[name], prompts=EVALUATION_PROMPTS)
        for _ in range(honest_count)
    ]
    challenges = drawn[:count]
    results: dict = {"model": reference.name, "challenges_per_cheat": count}
    try:
        keys = NodeKeys()
        measured = await _benchmark(honest)
        honest_attestation = _attestation(measured, honest, keys, reference.model_id, 1.0)
        honest_pairs = await _answers(honest, reference, drawn, keys, honest_attestation)
        honest_verdicts = [verdict for _, verdict in honest_pairs]
        failed = [v for v in honest_verdicts if v.failed]
        benchmark_groups = _groups(honest_pairs, reference)
        results["honest"] = {
            "benchmark_groups": len(benchmark_groups),
            "benchmark_false_positives": sum(r.passed is False for r in benchmark_groups),
            "answers": len(honest_verdicts),
            "false_positives": len(failed),
            "false_positive_rate": round(len(failed) / len(honest_verdicts), 4),
            "provable_false_positives": sum(v.strike is not None for v in honest_verdicts),
            "failures": [v.summary() for v in failed][:10],
        }
        print(f"[{name}] honest: {results['honest']}", flush=True)
        rows = []
        for cheat in _cheats(model_dir, honest, reference, full=True):
            engine = await trio.to_thread.run_sync(cheat.open)
            try:
                # Every cheat claims the honest engine's measured speed (times its factor).
                attestation = _attestation(
                    measured, honest, keys, reference.model_id, cheat.attestation_factor
                )
                pairs = await _answers(engine, reference, challenges, keys, attestation)
            finally:
                if cheat.close:
                    await engine.aclose()
            if cheat.attestation_factor != 1.0:
                row = {
                    "cheat": cheat.name,
                    "strength": cheat.strength,
                    **_benchmark_summary(pairs, reference),
                }
            else:
                verdicts = [verdict for answer, verdict in pairs if cheat.applies(answer, verdict)]
                row = {"cheat": cheat.name, "strength": cheat.strength, **_summary(verdicts, len(pairs))}
            print(f"[{name}] {row}", flush=True)
            rows.append(row)
        results["cheats"] = rows
        greedy = [c for c in challenges if c.greedy][:20]
        results["cost"] = await _cost(reference, greedy)
        print(f"[{name}] cost: {results['cost']}", flush=True)
    finally:
        await honest.aclose()
        await reference.engine.aclose()
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 6), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        rows = results[model]["cheats"]
        labels = [f"{r['cheat']}\n{r['strength']}" for r in rows]
        per_challenge = [r["per_challenge"] if r["per_challenge"] is not None else 0 for r in rows]
        per_node = [r.get("per_node_after_10", r.get("per_node_after_6", 0)) for r in rows]
        axis.barh(labels, per_challenge, label="per challenge")
        axis.barh(labels, per_node, alpha=0.35, label="per node after 10 (speed: after 6)")
        honest = results[model]["honest"]
        axis.set_title(
            f"{results[model]['model']}: honest FP {honest['false_positives']}/{honest['answers']}"
        )
        axis.set_xlim(0, 1)
        axis.axvline(0.99, color="grey", linestyle=":")
        axis.tick_params(axis="y", labelsize=7)
        axis.invert_yaxis()
        axis.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(out_dir: Path) -> dict:
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    names = [n for n in os.environ.get("DOLPHIN_BENCH_VALIDATION_MODELS", "tiny,smollm2").split(",") if n]
    override = os.environ.get("DOLPHIN_BENCH_VALIDATION_CHALLENGES")
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        count = int(override) if override else DEFAULT_CHALLENGES[name]
        results[name] = trio.run(_bench_model, name, prepare_model(name, MODELS_DIR), count)
    plot = out_dir / "validation.png"
    _plot(results, plot)
    return {"models": results, "plot": str(plot)}
