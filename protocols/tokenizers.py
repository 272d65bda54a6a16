"""A model's tokenizer files as nodes serve them (TOKENIZER_PROTOCOL) and clients check them: sans-IO.

A model id is the sha256 of its manifest's canonical JSON, and the manifest lists the sha256 of every file
of the model. So a client that asked for model M takes a manifest only when its bytes hash to M, and then
each tokenizer file only when it hashes to the manifest's entry: a node can refuse to serve them, but it
cannot serve another tokenizer (or another chat template, which the manifest holds) under M.

Only the manifest and the tokenizer files (`TOKENIZER_FILES`, wherever the manifest lists them) are
served, never weights. Caps: the manifest `MAX_MANIFEST_BYTES`, each tokenizer file
`MAX_TOKENIZER_FILE_BYTES` (the largest in use, Gemma's tokenizer.json, is about 33 MB), all of a
model's together `MAX_TOKENIZER_BYTES`, at most `MAX_TOKENIZER_FILE_COUNT` files; a file travels in
`TokenizerFileChunk`s of at most `MAX_TOKENIZER_CHUNK` bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import PurePosixPath

from protocols.errors import HashMismatch, LimitError, SchemaError
from protocols.messages import TokenizerFileChunk

__all__ = [
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "MAX_TOKENIZER_BYTES",
    "MAX_TOKENIZER_FILE_BYTES",
    "MAX_TOKENIZER_FILE_COUNT",
    "TOKENIZER_FILES",
    "FileReceiver",
    "manifest_tokenizer_files",
    "tokenizer_entries",
]

MANIFEST_FILE = "dolphin-manifest.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
)
MAX_MANIFEST_BYTES = 1 << 20
MAX_TOKENIZER_FILE_BYTES = 64 << 20
MAX_TOKENIZER_BYTES = 128 << 20
MAX_TOKENIZER_FILE_COUNT = 16


def tokenizer_entries(files: Mapping[str, str]) -> dict[str, str]:
    """The tokenizer files among a manifest's `files` (relative path -> sha256 hex)."""
    return {name: digest for name, digest in files.items() if PurePosixPath(name).name in TOKENIZER_FILES}


def _check_path(name: str) -> None:
    """A relative path inside the model folder: no root, no `..`, no empty or `.` parts, no backslash."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\0" in name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise SchemaError(f"the manifest names a file outside the model folder: {name[:80]!r}")


def manifest_tokenizer_files(data: bytes, model: bytes) -> dict[str, str]:
    """The tokenizer files (relative path -> sha256 hex) that the manifest `data` lists, once `data` is
    the manifest named `model` (its sha256). Raises HashMismatch for another manifest, LimitError when it
    or its list is over the caps, SchemaError when it is not a manifest or names a path outside the
    folder."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise LimitError(f"a manifest of {len(data)} bytes is over the limit of {MAX_MANIFEST_BYTES}")
    if hashlib.sha256(data).digest() != model:
        raise HashMismatch(f"the manifest sent is not the one of model {model.hex()}")
    try:
        files = json.loads(data)["files"]
    except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise SchemaError(f"the manifest has no file list: {exc!r}") from None
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(digest, str) for name, digest in files.items()
    ):
        raise SchemaError("the manifest's file list is not a map of paths to sha256 digests")
    wanted = tokenizer_entries(files)
    if len(wanted) > MAX_TOKENIZER_FILE_COUNT:
        raise LimitError(f"the manifest lists {len(wanted)} tokenizer files, over {MAX_TOKENIZER_FILE_COUNT}")
    for name, digest in wanted.items():
        _check_path(name)
        try:
            if len(bytes.fromhex(digest)) != 32:
                raise ValueError
        except ValueError:
            raise SchemaError(f"the manifest's sha256 of {name[:80]!r} is not 64 hex digits") from None
    return wanted


class FileReceiver:
    """One file arriving as `TokenizerFileChunk`s, checked as it comes: the size the first chunk
    announces must be within `max_bytes` and the same in every chunk, the data must not run past it, and
    the whole must hash to `sha256` (the model id for the manifest, the manifest's entry for a file).
    Feed the chunks to `receive` until `done`, then `finish` returns the bytes. Raises ProtocolError
    subclasses (LimitError, SchemaError, HashMismatch)."""

    def __init__(self, name: str, sha256: bytes, max_bytes: int) -> None:
        self.name = name
        self.size: int | None = None
        self._sha256 = sha256
        self._max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._received = 0
        self._digest = hashlib.sha256()

    @property
    def done(self) -> bool:
        return self.size is not None and self._received == self.size

    def receive(self, chunk: TokenizerFileChunk) -> None:
        if chunk.error is not None:
            raise SchemaError(f"a refusal ({chunk.error!r}) is not a piece of {self.name}")
        if self.size is None:
            if chunk.size > self._max_bytes:
                raise LimitError(f"{self.name} of {chunk.size} bytes is over the limit of {self._max_bytes}")
            self.size = chunk.size
        elif chunk.size != self.size or not chunk.data:
            raise SchemaError(f"a piece of {self.name} changes its size or carries nothing")
        if self._received + len(chunk.data) > self.size:
            raise LimitError(f"more of {self.name} than the {self.size} bytes announced")
        self._parts.append(chunk.data)
        self._received += len(chunk.data)
        self._digest.update(chunk.data)

    def finish(self) -> bytes:
        if not self.done:
            raise SchemaError(f"{self.name} is not complete")
        if self._digest.digest() != self._sha256:
            raise HashMismatch(f"{self.name} does not hash to {self._sha256.hex()}, the digest that names it")
        return b"".join(self._parts)
