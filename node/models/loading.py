"""Load a model folder for in-process generation: offline, verified, with deterministic CPU threads."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.models.manifest import ModelManifest, load_manifest, verify_model_dir


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
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a daemon's log is for people: no per-tensor progress bars
    manifest = verify_model_dir(model_dir) if verify else load_manifest(model_dir)
    if threads is not None:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    model.eval()
    return LoadedModel(manifest=manifest, tokenizer=tokenizer, model=model)


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens. temperature 0 is greedy: the same input then always gives the same ids."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def generate_kwargs(self, pad_token_id: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad_token_id}
        if self.temperature <= 0:
            return kwargs | {"do_sample": False}
        return kwargs | {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


def encode_chat(loaded: LoadedModel, messages: list[dict[str, str]]) -> dict[str, Any]:
    """The model's chat template applied to `messages`, as generate() inputs (input_ids, attention_mask)."""
    return loaded.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def _pad_token_id(loaded: LoadedModel) -> int:
    tokenizer = loaded.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _generate(loaded: LoadedModel, encoded: dict[str, Any], sampling: Sampling, **extra: Any) -> Any:
    import torch

    with torch.inference_mode():
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        return loaded.model.generate(**encoded, **sampling.generate_kwargs(_pad_token_id(loaded)), **extra)


def generate_greedy(loaded: LoadedModel, messages: list[dict[str, str]], max_new_tokens: int) -> list[int]:
    """Greedy continuation of a chat as token ids (no sampling, so the same input gives the same ids)."""
    encoded = encode_chat(loaded, messages)
    output = _generate(loaded, encoded, Sampling(max_new_tokens=max_new_tokens))
    return output[0][encoded["input_ids"].shape[1] :].tolist()


def stream_completion(
    loaded: LoadedModel, messages: list[dict[str, str]], sampling: Sampling
) -> Iterator[tuple[str, list[int]]]:
    """The continuation streamed as (text delta, token ids) pairs while the model generates.

    Greedy (temperature 0) ids equal `generate_greedy`'s. Text is decoded from all ids so far and only the
    new suffix is emitted, holding back while the tail is an incomplete UTF-8 sequence, so a multi-byte
    character split across tokens is never emitted broken. Closing the iterator early (the client went
    away) stops generation at the next token instead of finishing the answer for nobody.
    """
    from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    abandoned = threading.Event()

    class _WhenAbandoned(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            return torch.full((input_ids.shape[0],), abandoned.is_set(), dtype=torch.bool)

    tokens: queue.Queue[list[int] | None] = queue.Queue()

    class _IdStreamer(BaseStreamer):
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value) -> None:
            if not self.prompt_seen:  # generate() first puts the prompt itself
                self.prompt_seen = True
                return
            tokens.put(value.reshape(-1).tolist())

        def end(self) -> None:
            tokens.put(None)

    encoded = encode_chat(loaded, messages)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            stopping = StoppingCriteriaList([_WhenAbandoned()])
            _generate(loaded, encoded, sampling, streamer=_IdStreamer(), stopping_criteria=stopping)
        except BaseException as exc:  # re-raised in the consumer's thread below
            failure.append(exc)
            tokens.put(None)

    worker = threading.Thread(target=run, name="generate", daemon=True)
    worker.start()
    ids: list[int] = []
    emitted = ""
    pending: list[int] = []
    try:
        while (batch := tokens.get()) is not None:
            ids.extend(batch)
            pending.extend(batch)
            text = loaded.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue
            yield text[len(emitted) :], pending
            emitted, pending = text, []
    finally:
        abandoned.set()
        worker.join()
    if failure:
        raise failure[0]
    if pending:
        yield loaded.tokenizer.decode(ids, skip_special_tokens=True)[len(emitted) :], pending
