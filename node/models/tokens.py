"""A chat's prompt tokens as the model's own chat template makes them: what engines feed the model, and
what a client with the model's tokenizer counts to check a receipt's bill exactly (`TokenizerCounter`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.errors import ModelError
from node.models.manifest import TOKENIZER_FILES, ModelManifest, load_manifest, sha256_file

__all__ = [
    "TokenizerCounter",
    "chat_token_ids",
    "check_model_dir",
    "import_tokenizer_machinery",
    "load_tokenizer",
]


def chat_token_ids(tokenizer: Any, messages: Sequence[tuple[str, str]]) -> list[int]:
    """The prompt ids for `messages` ((role, content) pairs): the chat template with the generation prompt,
    or, when the last message is the assistant's, continuing it. ModelError without a chat template."""
    if not messages:
        raise ModelError("a chat needs at least one message")
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError("this model has no chat template: send prompt token ids instead")
    continues = messages[-1][0] == "assistant"
    encoded = tokenizer.apply_chat_template(
        [{"role": role, "content": content} for role, content in messages],
        add_generation_prompt=not continues,
        continue_final_message=continues,
        return_dict=True,
    )
    return list(encoded["input_ids"])


def load_tokenizer(model_dir: Path, manifest: ModelManifest | None = None) -> Any:
    """The model folder's tokenizer, offline, with the chat template its manifest names (`manifest`, or the
    folder's own): the template the model id covers, whichever side (node, validator, client) loads it."""
    from transformers import AutoTokenizer

    if manifest is None:
        manifest = load_manifest(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if manifest.chat_template:
        tokenizer.chat_template = manifest.chat_template
    return tokenizer


def check_model_dir(model_dir: Path, model_id: bytes | None = None) -> ModelManifest:
    """The folder's manifest, once its tokenizer files are the ones the manifest hashes (and the manifest
    the one named `model_id`, when given): the count a client holds a node to must be the model's own.
    Quick (no tokenizer is loaded). Raises ModelError."""
    manifest = load_manifest(model_dir)
    if model_id is not None and manifest.model_id() != model_id:
        raise ModelError(f"{model_dir} holds model {manifest.model_id().hex()}, not {model_id.hex()}")
    for name, digest in manifest.files.items():
        path = model_dir / name
        if Path(name).name in TOKENIZER_FILES and (not path.is_file() or sha256_file(path) != digest):
            raise ModelError(f"{path} is missing or differs from the manifest")
    return manifest


def import_tokenizer_machinery() -> None:
    """Import what `load_tokenizer` needs (transformers' auto classes and model configs, torch behind
    them: seconds on a cold process), so that a first load later is quick; for a worker thread."""
    import transformers.configuration_utils
    import transformers.models.auto.tokenization_auto  # noqa: F401


class TokenizerCounter:
    """A model's token counts from its tokenizer and chat template (`protocols.inference.TokenCounter`):
    what a client needs to countersign only exact bills."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._end = tokenizer.eos_token_id

    @classmethod
    def from_model_dir(cls, model_dir: Path, model_id: bytes | None = None) -> TokenizerCounter:
        """The counter of the model folder's tokenizer, offline (`check_model_dir`, then the load).
        Raises ModelError."""
        return cls.from_checked_dir(model_dir, check_model_dir(model_dir, model_id))

    @classmethod
    def from_checked_dir(cls, model_dir: Path, manifest: ModelManifest) -> TokenizerCounter:
        """The counter of a folder `check_model_dir` passed (its manifest): the slow part, seconds of
        imports (transformers, torch) on a cold process, which a caller may run in a worker thread.
        Raises ModelError."""
        try:
            tokenizer = load_tokenizer(model_dir, manifest)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the tokenizer in {model_dir}: {exc}") from exc
        return cls(tokenizer)

    def prompt_tokens(self, messages: Sequence[Any]) -> int:
        """The prompt tokens for a chat (ChatMessages or (role, content) pairs)."""
        pairs = [(m.role, m.content) if hasattr(m, "role") else (m[0], m[1]) for m in messages]
        return len(chat_token_ids(self.tokenizer, pairs))

    def output_matches(self, token_ids: Sequence[int], text: str, stop: Sequence[str]) -> bool:
        """Whether `token_ids` are the answer `text`: they decode to it, hold the end-of-sequence token
        only last, and reach past the text only by the token that completed a stop string. (Other special
        tokens decode to no text either; a model may emit them, so padding with them is left to the
        validators' fingerprint check, which finds tokens the model would not choose.)"""
        ids = list(token_ids)
        if ids and ids[-1] == self._end:
            ids.pop()
        if self._end in ids:
            return False
        decoded = self._decode(ids)
        if decoded == text:
            return True
        rest = decoded[len(text) :] if decoded.startswith(text) else None
        return rest is not None and any(
            s and rest.startswith(s) and not self._decode(ids[:-1]).startswith(text + s) for s in stop
        )

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)
