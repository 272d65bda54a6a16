"""Serving the models' manifests and tokenizer files (TOKENIZER_PROTOCOL), so that a client without a model
folder can count its bills exactly (pool.tokenizers fetches and checks them against the model id).

Only the manifest (its canonical JSON, whose sha256 is the model id) and the tokenizer files it lists are
served, never weights or any other path; a file over `MAX_TOKENIZER_FILE_BYTES` is refused, as is a request
while `MAX_TRANSFERS` files are on their way already (the client asks another member). Every read and write
has the host's stream deadline; nothing a peer sends ends the node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import trio

from node.models.manifest import ModelManifest
from p2p import P2PError
from p2p.interfaces import MessageStream
from protocols.errors import ProtocolError
from protocols.messages import MAX_TOKENIZER_CHUNK, TokenizerFileChunk, TokenizerFileRequest
from protocols.schema import decode_message, encode_message
from protocols.tokenizers import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MAX_TOKENIZER_FILE_BYTES,
    tokenizer_entries,
)

__all__ = ["MAX_TRANSFERS", "TokenizerFileServer"]

log = logging.getLogger(__name__)

MAX_TRANSFERS = 4  # files sent at once; a request beyond is refused as busy
_MAX_REQUEST_BYTES = 512


class TokenizerFileServer:
    """The TOKENIZER_PROTOCOL handler for the models served from `models` ((manifest, folder) pairs)."""

    def __init__(self, models: Iterable[tuple[ModelManifest, Path]]) -> None:
        self._models = {
            manifest.model_id(): (manifest.canonical_json(), folder, tokenizer_entries(manifest.files))
            for manifest, folder in models
        }
        self._transfers = trio.Semaphore(MAX_TRANSFERS)

    async def handle(self, stream: MessageStream) -> None:
        try:
            request = decode_message(await stream.read_message(_MAX_REQUEST_BYTES), TokenizerFileRequest)
        except (P2PError, ProtocolError) as exc:
            log.info("malformed tokenizer file request from %s: %s", stream.peer_id, exc)
            await stream.reset()
            return
        served = self._models.get(request.model)
        if served is None:
            await _refuse(stream, "this node does not serve that model")
            return
        manifest, folder, tokenizer_files = served
        if request.path != MANIFEST_FILE and request.path not in tokenizer_files:
            await _refuse(stream, "not a tokenizer file of that model's manifest")
            return
        try:
            self._transfers.acquire_nowait()
        except trio.WouldBlock:
            await _refuse(stream, "busy sending other files: ask another member")
            return
        try:
            if request.path == MANIFEST_FILE:
                await _send_bytes(stream, manifest)
            else:
                await _send_file(stream, folder / request.path)
        except P2PError as exc:
            log.info("tokenizer file transfer to %s ended: %s", stream.peer_id, exc)
            await stream.reset()
        finally:
            self._transfers.release()


async def _refuse(stream: MessageStream, why: str) -> None:
    await stream.write_message(encode_message(TokenizerFileChunk(size=0, error=why)))
    await stream.close()


async def _send_bytes(stream: MessageStream, data: bytes) -> None:
    if len(data) > MAX_MANIFEST_BYTES:
        await _refuse(stream, "the manifest is too large to serve")
        return
    for offset in range(0, max(len(data), 1), MAX_TOKENIZER_CHUNK):
        piece = data[offset : offset + MAX_TOKENIZER_CHUNK]
        await stream.write_message(encode_message(TokenizerFileChunk(size=len(data), data=piece)))
    await stream.close()


async def _send_file(stream: MessageStream, path: Path) -> None:
    try:
        handle = await trio.open_file(path, "rb")
    except OSError as exc:
        log.warning("cannot serve the tokenizer file %s: %s", path, exc)
        await _refuse(stream, "that file is not available on this node")
        return
    async with handle:
        size = os.fstat(handle.wrapped.fileno()).st_size
        if size > MAX_TOKENIZER_FILE_BYTES:
            await _refuse(stream, "the file is too large to serve")
            return
        sent = 0
        while True:
            piece = await handle.read(min(MAX_TOKENIZER_CHUNK, size - sent))
            if not piece and sent < size:
                log.warning("the tokenizer file %s shrank while it was sent", path)
                await stream.reset()
                return
            await stream.write_message(encode_message(TokenizerFileChunk(size=size, data=piece)))
            sent += len(piece)
            if sent == size:
                break
    await stream.close()
