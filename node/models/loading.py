"""Load a model folder for the in-process engine: offline, verified, with deterministic CPU threads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.models.manifest import ModelManifest, load_manifest, verify_model_dir
from node.models.tokens import load_tokenizer


@dataclass
class LoadedModel:
    manifest: ModelManifest
    tokenizer: Any
    model: Any


def load_model(model_dir: Path, *, verify: bool = True, threads: int | None = 1) -> LoadedModel:
    """Load tokenizer and weights from `model_dir` without touching any hub.

    With `verify`, every file is checked against the manifest first, so a node never serves weights that
    differ from the model id it advertises. `threads` pins torch's intra-op thread count: float reductions
    split differently across threads, and greedy outputs must be reproducible bit for bit.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a daemon's log is for people: no per-tensor progress bars
    manifest = verify_model_dir(model_dir) if verify else load_manifest(model_dir)
    if threads is not None:
        torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir, manifest)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    model.eval()
    return LoadedModel(manifest=manifest, tokenizer=tokenizer, model=model)
