"""The demo's cheating node: the real `dolphin node` program serving a cheaper model than it announces.

    python -m cli.demo_cheater [dolphin options...] node [node options...]

It loads and verifies the genuine model folder like any node (so it announces the genuine model id and
passes every check a node runs on itself), then quietly drops the second half of the model's transformer
layers: half the compute per token, answers that look plausible at a glance. Validators catch it by the
teacher-forced fingerprint of its answers. The cheat is this file, which only `dolphin demo` starts; the
product has no switch for it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import node.slots
from node.config import NodeConfig
from node.engines.base import Engine
from node.slots import Progress


def _drop_half_the_layers(engine) -> None:
    decoder = engine.model.model
    kept = max(1, len(decoder.layers) // 2)
    decoder.layers = decoder.layers[:kept]
    engine.model.config.num_hidden_layers = kept


def main() -> None:
    open_engine = node.slots._open_engine

    @contextlib.asynccontextmanager
    async def open_cheaper_engine(
        config: NodeConfig, model_dir: Path, log_dir: Path, progress: Progress
    ) -> AsyncIterator[Engine]:
        async with open_engine(config, model_dir, log_dir, progress) as engine:
            _drop_half_the_layers(engine)
            yield engine

    node.slots._open_engine = open_cheaper_engine
    from cli.main import main as dolphin

    dolphin(sys.argv[1:])


if __name__ == "__main__":
    main()
