"""The reference model a validator checks answers against: the advertised model, run by the validator.

It is the model folder whose manifest hash is the pool's model id, verified file by file, loaded in the
in-process transformers engine (`node.engines`), whose `score` is the one teacher-forced prefill every
fingerprint check costs. Beside the engine it keeps what the checks need to know about the model: the
end-of-sequence ids, the context length, and, for replaying seeded sampling, the vocabulary size and the
device kind whose random generator a node's transformers engine uses (`SeededReplay`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import trio

from node.engines.base import Engine
from node.engines.transformers import TransformersEngine
from node.errors import NodeError
from validator.errors import ReferenceModelError

__all__ = ["Reference", "SeededReplay", "open_reference"]


@dataclass(frozen=True)
class SeededReplay:
    """Replays the transformers engine's seeded sampler (`node.engines.transformers._sample`): temperature,
    then nucleus filtering, then `torch.multinomial(probs, 1, generator)`, which for one draw is the
    exponential race argmax(p / q) with q ~ Exp(1) per vocabulary entry, from a generator seeded with the
    request's seed and advanced by one vector of `vocab_size` draws per sampled token. Only a node whose
    generator is the same kind (`backend`, the attestation's hardware backend) draws the same q."""

    vocab_size: int
    backend: str = "cpu"

    def races(self, seed: int, candidates: list[list[int]]) -> list[tuple[list[float], float]]:
        """Per sampled token under `seed`: the draws q of the `candidates` ids at that step, and the least
        draw among every other id (one vocab_size vector of draws per step, as the node's sampler takes)."""
        import torch

        generator = torch.Generator().manual_seed(seed)
        races = []
        for ids in candidates:
            q = torch.empty(self.vocab_size, dtype=torch.float32).exponential_(1, generator=generator)
            others = torch.ones(self.vocab_size, dtype=torch.bool)
            others[ids] = False
            races.append((q[ids].tolist(), float(q[others].min())))
        return races


@dataclass(frozen=True)
class Reference:
    """The reference model: its engine and the facts about it the checks use."""

    engine: Engine
    model_id: bytes
    name: str
    eos_ids: frozenset[int]
    max_model_len: int
    replay: SeededReplay | None = None
    folder: Path | None = None  # the folder it was loaded from: the validator serves its tokenizer files


def reference_from_engine(engine: TransformersEngine) -> Reference:
    """The reference of an open transformers engine (its manifest names the model)."""
    manifest = engine.loaded.manifest
    return Reference(
        engine=engine,
        model_id=manifest.model_id(),
        name=manifest.name,
        eos_ids=engine.eos_ids,
        max_model_len=engine.max_model_len,
        replay=SeededReplay(engine.model.config.vocab_size, engine.device.type),
    )


async def open_reference(model_dir: Path, *, threads: int | None = 1, max_batch: int = 4) -> Reference:
    """Load `model_dir` (verified against its manifest) as the reference; ReferenceModelError if it cannot be.

    `threads` pins torch's threads (see `TransformersEngine.open`); the reference only scores, one prefill at
    a time, so a small `max_batch` is enough.
    """
    try:
        engine = await trio.to_thread.run_sync(
            lambda: TransformersEngine.open(model_dir, max_batch=max_batch, threads=threads, verify=True)
        )
    except (NodeError, OSError, ValueError) as exc:
        raise ReferenceModelError(f"cannot load the reference model from {model_dir}: {exc}") from exc
    return dataclasses.replace(reference_from_engine(engine), folder=model_dir)
