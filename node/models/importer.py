"""Import a checkpoint from disk into a model folder a node can serve: `dolphin model import SRC OUT_DIR`.

SRC is either a Hugging Face transformers folder (config.json, safetensors weights, sharded or not, and the
tokenizer with its chat template; a hub cache snapshot folder works too) or a GGUF file that transformers
can read. A folder is copied file by file (only what serving needs: config, weights, tokenizer; no pickled
weights, no custom code); a GGUF file is dequantised into a plain float32 safetensors folder, as vLLM and a
fresh transformers load want. Then the manifest is written: name, revision, architecture, dtype, context
length, the chat template, the quantization a quantized checkpoint names (it is served as that quantized
model, with its own id) and every file's hash. Its hash is the model id.

What cannot be served faithfully is refused before anything is written, with one line that says why: an
architecture transformers has no causal language model for, code the checkpoint would run, missing or
pickled weights, a missing tokenizer or chat template. Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.errors import ModelError, ModelSourceMissing
from node.models.manifest import ModelManifest, ServingHints, build_manifest, write_manifest

__all__ = ["IMPORT_STEPS", "import_model", "source_bytes"]

IMPORT_STEPS = ("inspect", "tokenizer", "weights", "hash")
"""The steps `on_step` is told about, in order."""

_SERVING_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "vocab.json",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
    }
)
_PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_QUANT_SUFFIX = re.compile(r"[.-](I?Q\d\w*|F16|BF16|F32)$", re.IGNORECASE)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Described:
    """What the import learned about the source before writing anything."""

    name: str
    revision: str
    architecture: str
    dtype: str
    max_model_len: int
    chat_template: str
    quantization: str = ""


def import_model(
    src: Path,
    out_dir: Path,
    *,
    name: str | None = None,
    revision: str | None = None,
    max_model_len: int | None = None,
    replace: bool = False,
    source: str = "",
    on_step: Callable[[str], None] = lambda step: None,
    on_bytes: Callable[[int], None] | None = None,
) -> ModelManifest:
    """Import `src` (a Hugging Face folder or a .gguf file) into `out_dir` and write its manifest.

    `name`, `revision` and `max_model_len` override what is read from the source. `out_dir` must be empty
    or absent unless `replace`. `on_step` is told each of IMPORT_STEPS as it starts; `on_bytes` counts the
    bytes copied (or read) and then hashed, for a progress bar sized by `source_bytes`.
    """
    src = Path(src)
    if not src.exists():
        raise ModelSourceMissing(f"{src} does not exist")
    if src.is_file() and src.suffix.lower() != ".gguf":
        raise ModelError(f"{src} is neither a Hugging Face model folder nor a .gguf file")
    _check_out_dir(src, out_dir, replace)
    on_step("inspect")
    if src.is_dir():
        described = _import_folder(src, out_dir, name, revision, max_model_len, on_step, on_bytes)
    else:
        described = _import_gguf(src, out_dir, name, revision, max_model_len, on_step, on_bytes)
    on_step("hash")
    serving = ServingHints(max_model_len=described.max_model_len, dtype=described.dtype, chat_template=True)
    manifest = build_manifest(
        out_dir,
        name=described.name,
        serving=serving,
        source=source,
        revision=described.revision,
        chat_template=described.chat_template,
        quantization=described.quantization,
        progress=on_bytes,
    )
    if manifest.architecture != described.architecture:
        raise ModelError(f"{out_dir}/config.json changed while importing; import again")
    write_manifest(out_dir, manifest)
    return manifest


def source_bytes(src: Path) -> int:
    """Bytes an import of `src` reads (copies, or converts): size a progress bar with twice this, as the
    written folder is hashed too (about as large, more for a dequantised GGUF)."""
    src = Path(src)
    if src.is_file():
        return src.stat().st_size
    return sum(p.stat().st_size for p in _serving_files(src))


def _check_out_dir(src: Path, out_dir: Path, replace: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir} exists and is not a folder")
    if src.is_dir() and out_dir.exists() and src.resolve() == out_dir.resolve():
        raise ModelError("the output folder must differ from the source folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not replace:
        raise ModelError(f"{out_dir} is not empty: import into a new folder")


def _serving_files(src: Path) -> list[Path]:
    """The source files a served model needs, in a stable order (hub snapshot symlinks followed): with a
    weight index, only the shards it names (a repository may hold the same weights in another layout)."""
    shards = _indexed_shards(src)

    def needed(path: Path) -> bool:
        if path.suffix == ".safetensors":
            return shards is None or path.name in shards
        return path.name in _SERVING_FILES

    return sorted(p for p in src.iterdir() if p.is_file() and needed(p))


def _indexed_shards(src: Path) -> set[str] | None:
    """The shard files `model.safetensors.index.json` names, or None without an index."""
    index = src / "model.safetensors.index.json"
    if not index.is_file():
        return None
    try:
        return {str(name) for name in json.loads(index.read_text())["weight_map"].values()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{index} is malformed: {exc!r}") from exc


def _read_config(src: Path) -> dict[str, Any]:
    path = src / "config.json"
    if not path.is_file():
        raise ModelError(f"{src} has no config.json: not a Hugging Face transformers model folder")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{path} is not a JSON object")
    return config


def _architecture(config: dict[str, Any], where: Path) -> str:
    """The checkpoint's class, refused unless it is a causal language model transformers itself defines."""
    from transformers import __version__
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config.get("auto_map"):
        raise ModelError(f"{where} needs custom code (auto_map), which a node never runs")
    architectures = config.get("architectures") or []
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None
    if not isinstance(architecture, str):
        raise ModelError(f"{where} names no architecture in config.json")
    if architecture not in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()):
        raise ModelError(
            f"unknown architecture {architecture}: transformers {__version__} has no causal language model "
            "of that name"
        )
    return architecture


def _context_length(config: dict[str, Any], override: int | None, where: Path) -> int:
    if override is not None:
        if override <= 0:
            raise ModelError("the context length must be positive")
        return override
    for key in _CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelError(f"{where} does not say its context length: pass --max-model-len")


def _chat_template(tokenizer: Any, where: Path) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the one used without a name
        template = template.get("default")
    if not isinstance(template, str) or not template.strip():
        raise ModelError(f"{where} has no chat template: chats could not be prompted as the model expects")
    return template


def _load_tokenizer(path: Path, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        raise ModelError(f"cannot read the tokenizer of {path}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_weights(src: Path) -> None:
    """Refuse folders without safetensors weights, or whose index names shards that are not there."""
    files = [p for p in src.iterdir() if p.is_file()]
    if not any(p.suffix == ".safetensors" for p in files):
        if any(p.suffix in _PICKLED_WEIGHTS for p in files):
            raise ModelError(f"{src} has pickled weights only (.bin): convert them to safetensors first")
        raise ModelError(f"{src} has no weights (*.safetensors)")
    shards = _indexed_shards(src)
    missing = sorted(s for s in shards or () if not (src / s).is_file())
    if missing:
        raise ModelError(f"{src} lacks weight shards its index names: {', '.join(missing)}")


def _git_commit(src: Path) -> str:
    """The commit a git checkout of a hub repository is at ("" when `src` is not one)."""
    git = src / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return ""


def _hub_snapshot(src: Path) -> tuple[str, str] | None:
    """(repo name, commit) when `src` is a hub cache snapshot, .../models--org--name/snapshots/<commit>."""
    resolved = src.resolve()
    if resolved.parent.name == "snapshots" and resolved.parent.parent.name.startswith("models--"):
        repo = resolved.parent.parent.name.removeprefix("models--").replace("--", "/")
        return repo, resolved.name
    return None


def _import_folder(
    src: Path,
    out_dir: Path,
    name: str | None,
    revision: str | None,
    max_model_len: int | None,
    on_step: Callable[[str], None],
    on_bytes: Callable[[int], None] | None,
) -> _Described:
    config = _read_config(src)
    architecture = _architecture(config, src)
    if not ((src / "tokenizer.json").is_file() or (src / "tokenizer.model").is_file()):
        raise ModelError(f"{src} has no tokenizer (tokenizer.json or tokenizer.model)")
    _check_weights(src)
    context = _context_length(config, max_model_len, src)
    quantization = _quantization(config, src)
    snapshot = _hub_snapshot(src)

    on_step("tokenizer")
    template = _chat_template(_load_tokenizer(src), src)

    on_step("weights")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in _serving_files(src):
        _copy(path, out_dir / path.name, on_bytes)
    return _Described(
        name=name or (snapshot[0] if snapshot else src.resolve().name),
        revision=revision if revision is not None else (snapshot[1] if snapshot else _git_commit(src)),
        architecture=architecture,
        dtype=str(config.get("dtype") or config.get("torch_dtype") or "auto"),
        max_model_len=context,
        chat_template=template,
        quantization=quantization,
    )


def _quantization(config: dict[str, Any], where: Path) -> str:
    """The method a quantized checkpoint names in config.json ("" for full precision)."""
    quantization = config.get("quantization_config")
    if quantization is None:
        return ""
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    if not isinstance(method, str) or not method:
        raise ModelError(f"{where}/config.json has a quantization_config naming no quant_method")
    return method


def _copy(source: Path, target: Path, on_bytes: Callable[[int], None] | None) -> None:
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            if on_bytes:
                on_bytes(len(chunk))


def _import_gguf(
    src: Path,
    out_dir: Path,
    name: str | None,
    revision: str | None,
    max_model_len: int | None,
    on_step: Callable[[str], None],
    on_bytes: Callable[[int], None] | None,
) -> _Described:
    import torch
    from transformers import AutoModelForCausalLM

    from node.models.manifest import sha256_file

    # The file's own hash is its revision: two imports of one GGUF file describe the same model.
    file_hash = sha256_file(src, on_bytes)
    on_step("tokenizer")
    tokenizer = _load_tokenizer(src.parent, gguf_file=src.name)
    template = _chat_template(tokenizer, src)

    on_step("weights")
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, dtype=torch.float32, local_files_only=True
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(f"transformers cannot read {src.name}: {_one_line(exc)}") from exc
    config = loaded.config
    # A GGUF file names a model type, not a class: the class transformers chose for it is the architecture.
    architecture = _architecture({**config.to_dict(), "architectures": [type(loaded).__name__]}, src)
    context = _context_length(config.to_dict(), max_model_len, src)
    # The GGUF loader leaves a quantizer attached that refuses to save, although the weights are already
    # dequantised; move them into a plain model built from the same configuration.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return _Described(
        name=name or _QUANT_SUFFIX.sub("", src.stem),
        revision=revision if revision is not None else f"sha256:{file_hash}",
        architecture=architecture,
        dtype="float32",
        max_model_len=context,
        chat_template=template,
    )
