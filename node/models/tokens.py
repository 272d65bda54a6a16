"""A chat's prompt tokens as the model's own chat template makes them: what engines feed the model, and
what a client with the model folder uses to bound the prompt tokens a receipt may claim."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node.errors import ModelError
from node.models.manifest import ModelManifest, load_manifest

__all__ = ["PROMPT_TOKEN_SLACK", "chat_token_ids", "load_tokenizer", "prompt_token_counter"]

PROMPT_TOKEN_SLACK = 8
"""Tokens a client allows beyond its own count: tokenizer versions may render a template a little apart."""


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


def prompt_token_counter(model_dir: Path) -> Callable[[Sequence[Any]], int]:
    """For a client holding the model folder: the most prompt tokens an honest node counts for a chat
    (ChatMessages or (role, content) pairs), from the model's own tokenizer and template, offline."""
    tokenizer = load_tokenizer(model_dir)

    def count(messages: Sequence[Any]) -> int:
        pairs = [(m.role, m.content) if hasattr(m, "role") else (m[0], m[1]) for m in messages]
        return len(chat_token_ids(tokenizer, pairs)) + PROMPT_TOKEN_SLACK

    return count
