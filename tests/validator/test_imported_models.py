"""A validator audits SmolLM2 as imported from its GGUF file by `dolphin model import`: its reference is
that import, verified file by file, and an honest node's answers from the same import pass every check."""

import random

import pytest
import trio

from node.engines.transformers import TransformersEngine
from validator.calibration import thresholds_for
from validator.challenges import draw_challenge
from validator.checks import check_answer
from validator.reference import open_reference
from validator.testing import NodeKeys, answer_in_process, attestation_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.trio]


async def test_honest_answers_of_the_imported_smollm2_pass_its_imported_reference(smollm2_model_dir):
    reference = await open_reference(smollm2_model_dir, max_batch=2)
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(smollm2_model_dir, max_batch=4))
    try:
        assert reference.name == "SmolLM2-135M-Instruct"
        thresholds = thresholds_for(reference.name)
        keys = NodeKeys()
        attestation = attestation_for(keys, reference.model_id, decode_tps=1.0)
        rng = random.Random(5)
        for challenge in [draw_challenge(rng, max_tokens=16) for _ in range(4)]:
            answer = await answer_in_process(
                engine, challenge, model=reference.model_id, keys=keys, attestation=attestation
            )
            verdict = await check_answer(reference, answer, thresholds, own_clock=True)
            assert not verdict.failed, verdict.summary()
    finally:
        await engine.aclose()
        await reference.engine.aclose()
