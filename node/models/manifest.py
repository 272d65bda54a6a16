"""Model manifests: what a model folder contains, hashed into the name the network knows the model by.

A manifest lists the model's name, architecture, the sha256 of every file, a hash of the tokenizer files
alone (two models that tokenize alike share it, which validators use to compare token counts), serving
hints for engines (dtype, context length), and, for imported models, the source's revision and the chat
template itself, so that every side that builds a prompt (node, validator, client) uses the one template
the model id covers. Its hash -- sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) -- is the
32-byte model id carried in pool records, heartbeats and receipts. The manifest file itself is not hashed
into the file list, so writing it never changes what it describes. `revision` and `chat_template` are left
out of the JSON while empty, as is `quantization`, which names a checkpoint's own quantization method (its
quantized weights are the model: another model id than the full-precision one), so manifests written
before they existed keep their hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from node.errors import ModelError
from protocols.tokenizers import MANIFEST_FILE, TOKENIZER_FILES

MANIFEST_FORMAT = "dolphin-model-manifest/1"
_OPTIONAL_FIELDS = ("revision", "chat_template", "quantization")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ServingHints:
    """What an engine needs to serve the model well; advisory, but covered by the manifest hash."""

    max_model_len: int
    dtype: str
    chat_template: bool
    engines: tuple[str, ...] = ("transformers", "vllm")


@dataclass(frozen=True)
class ModelManifest:
    name: str
    architecture: str
    tokenizer_sha256: str
    files: dict[str, str]
    serving: ServingHints
    source: str = ""
    format: str = field(default=MANIFEST_FORMAT)
    revision: str = ""
    chat_template: str = ""
    quantization: str = ""  # the checkpoint's own quantization method (e.g. "fp8", "awq"); "" for none

    def canonical_json(self) -> bytes:
        """The bytes the model id is computed over: sorted keys, no whitespace, UTF-8."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def model_id(self) -> bytes:
        """The 32-byte name of this model on the network."""
        return hashlib.sha256(self.canonical_json()).digest()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["serving"]["engines"] = list(self.serving.engines)
        for name in _OPTIONAL_FIELDS:
            if not data[name]:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelManifest:
        try:
            if data["format"] != MANIFEST_FORMAT:
                raise ModelError(
                    f"unsupported manifest format {data['format']!r}; expected {MANIFEST_FORMAT!r}"
                )
            serving = dict(data["serving"])
            serving["engines"] = tuple(serving.get("engines", ()))
            return cls(
                name=str(data["name"]),
                architecture=str(data["architecture"]),
                tokenizer_sha256=str(data["tokenizer_sha256"]),
                files={str(k): str(v) for k, v in data["files"].items()},
                serving=ServingHints(**serving),
                source=str(data.get("source", "")),
                revision=str(data.get("revision", "")),
                chat_template=str(data.get("chat_template", "")),
                quantization=str(data.get("quantization", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"malformed model manifest: {exc!r}") from exc


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


def model_files(model_dir: Path) -> list[Path]:
    """Every regular file of the model folder except the manifest, in a stable order."""
    return sorted(
        p
        for p in model_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST_FILE and "__pycache__" not in p.parts
    )


def tokenizer_hash(file_hashes: dict[str, str]) -> str:
    """Hash of the tokenizer files' hashes, so models that tokenize alike are recognisable as such."""
    present = sorted(name for name in file_hashes if Path(name).name in TOKENIZER_FILES)
    if not present:
        raise ModelError("the model folder has no tokenizer files (expected tokenizer.json)")
    digest = hashlib.sha256()
    for name in present:
        digest.update(f"{name}\0{file_hashes[name]}\n".encode())
    return digest.hexdigest()


def build_manifest(
    model_dir: Path,
    *,
    name: str,
    serving: ServingHints,
    source: str = "",
    revision: str = "",
    chat_template: str = "",
    quantization: str = "",
    progress: Callable[[int], None] | None = None,
) -> ModelManifest:
    """Hash the folder's files and describe them; reads the architecture from config.json."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{model_dir} has no config.json: is it a Hugging Face model folder?")
    architectures = json.loads(config_path.read_text()).get("architectures") or ["unknown"]
    hashes = {p.relative_to(model_dir).as_posix(): sha256_file(p, progress) for p in model_files(model_dir)}
    return ModelManifest(
        name=name,
        architecture=architectures[0],
        tokenizer_sha256=tokenizer_hash(hashes),
        files=hashes,
        serving=serving,
        source=source,
        revision=revision,
        chat_template=chat_template,
        quantization=quantization,
    )


def write_manifest(model_dir: Path, manifest: ModelManifest) -> Path:
    path = model_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def load_manifest(model_dir: Path) -> ModelManifest:
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise ModelError(
            f"{model_dir} has no {MANIFEST_FILE}; build or import the model with `dolphin model`"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    return ModelManifest.from_dict(data)


def verify_model_dir(model_dir: Path, progress: Callable[[int], None] | None = None) -> ModelManifest:
    """Check every file against the manifest; raises ModelError naming the first mismatch."""
    manifest = load_manifest(model_dir)
    present = {p.relative_to(model_dir).as_posix() for p in model_files(model_dir)}
    missing = sorted(set(manifest.files) - present)
    extra = sorted(present - set(manifest.files))
    if missing or extra:
        raise ModelError(f"{model_dir} does not match its manifest: missing {missing}, unexpected {extra}")
    for name, expected in sorted(manifest.files.items()):
        if sha256_file(model_dir / name, progress) != expected:
            raise ModelError(f"{model_dir / name} was modified: its sha256 no longer matches the manifest")
    return manifest
