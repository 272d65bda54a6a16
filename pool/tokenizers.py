"""Tokenizer files from the pool: how a client without a model folder counts its bills exactly.

`fetch_tokenizer(host, model, peers)` asks the pool's members in turn (TOKENIZER_PROTOCOL) for the manifest
named `model` and the tokenizer files it lists, and checks each as it arrives (`protocols.tokenizers`: the
manifest's sha256 must be the model id, each file's the manifest's entry, all within the caps); a member
that refuses, stalls, or sends anything else is passed over for the next, after one more try when the
transport broke the transfer. Since the model id is the manifest's hash, any member will do: none can
serve another tokenizer under the id. When no member serves them, `TokenizerCache` asks the validators,
which serve their reference model's the same way.

`TokenizerCache` keeps what was fetched under `<root>/<model id hex>/` (0700) and makes a `TokenCounter` of
it with the loader it is given: `cli` hands it node.models.tokens.TokenizerCounter, which checks the folder
against the model id once more, so a cached folder whose files no longer match is fetched again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import trio

from p2p import P2PError, StreamOpener
from pool.errors import TokenizerUnavailable
from protocols.errors import ProtocolError
from protocols.ids import TOKENIZER_PROTOCOL
from protocols.inference import TokenCounter
from protocols.messages import MAX_TOKENIZER_CHUNK, TokenizerFileChunk, TokenizerFileRequest
from protocols.schema import decode_message, encode_message
from protocols.tokenizers import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MAX_TOKENIZER_BYTES,
    MAX_TOKENIZER_FILE_BYTES,
    FileReceiver,
    manifest_tokenizer_files,
)
from runtime.files import make_private_dir
from runtime.home import DOLPHIN_HOME

__all__ = [
    "DEFAULT_TOKENIZER_CACHE",
    "CounterLoader",
    "TokenizerCache",
    "fetch_tokenizer",
    "write_tokenizer_folder",
]

log = logging.getLogger(__name__)

DEFAULT_TOKENIZER_CACHE = DOLPHIN_HOME / "tokenizers"
MEMBER_TIMEOUT_S = 30.0  # one member's whole transfer (every read has the host's stream deadline too)
FETCH_TIMEOUT_S = 60.0  # every member tried, in all
RETRY_AFTER_S = 300.0  # after a failed fetch, bills of that model use the byte bound this long
_MAX_CHUNK_FRAME = MAX_TOKENIZER_CHUNK + 1024  # the chunk's data and its encoding

CounterLoader = Callable[[Path, bytes], TokenCounter]
"""The counter of a model folder for a model id; raises ValueError when the folder's files are not that
model's tokenizer (missing, changed, another manifest) or make no tokenizer."""


async def _fetch_file(host: StreamOpener, peer_id: str, model: bytes, receiver: FileReceiver) -> bytes:
    stream = await host.open_stream(peer_id, TOKENIZER_PROTOCOL)
    try:
        await stream.write_message(encode_message(TokenizerFileRequest(model=model, path=receiver.name)))
        while not receiver.done:
            chunk = decode_message(await stream.read_message(_MAX_CHUNK_FRAME), TokenizerFileChunk)
            if chunk.error is not None:
                raise TokenizerUnavailable(f"it refused {receiver.name}: {chunk.error}")
            receiver.receive(chunk)
    finally:
        await stream.close()
    return receiver.finish()


async def _fetch_from(host: StreamOpener, peer_id: str, model: bytes) -> dict[str, bytes]:
    manifest = await _fetch_file(host, peer_id, model, FileReceiver(MANIFEST_FILE, model, MAX_MANIFEST_BYTES))
    files = {MANIFEST_FILE: manifest}
    total = 0
    for name, digest in sorted(manifest_tokenizer_files(manifest, model).items()):
        limit = min(MAX_TOKENIZER_FILE_BYTES, MAX_TOKENIZER_BYTES - total)
        receiver = FileReceiver(name, bytes.fromhex(digest), limit)
        files[name] = await _fetch_file(host, peer_id, model, receiver)
        total += len(files[name])
    return files


async def _fetch_from_member(host: StreamOpener, peer_id: str, model: bytes) -> dict[str, bytes]:
    """`_fetch_from`, once more on a fresh stream when the transport broke the first try: py-libp2p can
    close a connection under a stream just opened on it (seen: the first write failing with "connection
    reset" while the client had just dialled the node), and a client that gave up then would hold the
    bill to the byte bound."""
    try:
        return await _fetch_from(host, peer_id, model)
    except P2PError as exc:
        log.debug("fetching the tokenizer from %s once more: %s", peer_id, exc)
    return await _fetch_from(host, peer_id, model)


async def fetch_tokenizer(
    host: StreamOpener,
    model: bytes,
    peers: Sequence[str],
    *,
    member_timeout: float = MEMBER_TIMEOUT_S,
    timeout: float = FETCH_TIMEOUT_S,
) -> dict[str, bytes]:
    """The manifest (as `MANIFEST_FILE`) and tokenizer files of `model`, by path in the model folder, from
    the first of `peers` that serves them whole and right (module docstring), each member given
    `member_timeout` s, all `timeout` s. Raises TokenizerUnavailable, saying what each member did."""
    failures: list[str] = []
    with trio.move_on_after(timeout):
        for peer_id in peers:
            with trio.move_on_after(member_timeout) as scope:
                try:
                    return await _fetch_from_member(host, peer_id, model)
                except (P2PError, ProtocolError, TokenizerUnavailable) as exc:
                    failures.append(f"{peer_id}: {exc}")
            if scope.cancelled_caught:
                failures.append(f"{peer_id}: not complete within {member_timeout:g} s")
    why = "; ".join(failures[-3:]) or "no member to ask"
    raise TokenizerUnavailable(f"no pool member served the tokenizer of model {model.hex()} ({why})")


def write_tokenizer_folder(root: Path, model: bytes, files: Mapping[str, bytes]) -> Path:
    """Write fetched `files` as the folder `<root>/<model id hex>` (root and folder 0700), replacing what
    was there whole: they are written aside and renamed into place. Raises OSError."""
    make_private_dir(root)
    folder = root / model.hex()
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{model.hex()[:16]}-"))  # 0700
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # another client's fetch got there first
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


class TokenizerCache:
    """Token counters of models the client has no folder for: cached under `root`, else fetched from the
    model's pool (module docstring) with `load` making the counter."""

    def __init__(
        self,
        root: Path,
        load: CounterLoader,
        *,
        member_timeout: float = MEMBER_TIMEOUT_S,
        timeout: float = FETCH_TIMEOUT_S,
        retry_after: float = RETRY_AFTER_S,
    ) -> None:
        self.root = root.expanduser()
        self._load = load
        self._member_timeout = member_timeout
        self._timeout = timeout
        self._retry_after = retry_after
        self._counters: dict[bytes, TokenCounter] = {}
        self._retry_at: dict[bytes, float] = {}
        self._locks: defaultdict[bytes, trio.Lock] = defaultdict(trio.Lock)

    async def _fetch(
        self,
        host: StreamOpener,
        model: bytes,
        peers: Sequence[str],
        validators: Callable[[], Awaitable[Sequence[str]]] | None,
    ) -> dict[str, bytes]:
        """From the pool's members, else from the validators: a pool whose members all withhold the files
        would otherwise hold every bill of its model to the byte bound, which they can inflate to."""
        try:
            return await self._fetch_from_any(host, model, peers)
        except TokenizerUnavailable as exc:
            others = [peer for peer in await validators() if peer not in peers] if validators else []
            if not others:
                raise
            log.info("asking the validators for the tokenizer of model %s: %s", model.hex(), exc)
            return await self._fetch_from_any(host, model, others)

    async def _fetch_from_any(
        self, host: StreamOpener, model: bytes, peers: Sequence[str]
    ) -> dict[str, bytes]:
        return await fetch_tokenizer(
            host,
            model,
            random.sample(list(peers), len(peers)),
            member_timeout=self._member_timeout,
            timeout=self._timeout,
        )

    async def counter(
        self,
        host: StreamOpener,
        model: bytes,
        peers: Sequence[str],
        validators: Callable[[], Awaitable[Sequence[str]]] | None = None,
    ) -> TokenCounter | None:
        """The counter of `model`: from its cached folder while that still matches the model, else
        fetched from `peers` (tried in a random order), or when none serves the files from the peers
        `validators()` names (each validator serves its reference model's), and cached. None, logged,
        when nobody served the files or they make no tokenizer (not tried again for `retry_after` s), or
        there is nobody to ask."""
        async with self._locks[model]:
            if model in self._counters:
                return self._counters[model]
            if trio.current_time() < self._retry_at.get(model, -math.inf):
                return None
            folder = self.root / model.hex()
            try:
                counter = await trio.to_thread.run_sync(self._load, folder, model)
            except ValueError as exc:
                if not peers and validators is None:
                    return None
                if folder.exists():
                    log.info(
                        "the cached tokenizer of model %s is not usable (%s): fetching it again",
                        model.hex(),
                        exc,
                    )
                try:
                    files = await self._fetch(host, model, peers, validators)
                    await trio.to_thread.run_sync(write_tokenizer_folder, self.root, model, files)
                    counter = await trio.to_thread.run_sync(self._load, folder, model)
                except (TokenizerUnavailable, OSError, ValueError) as exc:
                    self._retry_at[model] = trio.current_time() + self._retry_after
                    log.warning(
                        "bills of model %s are held to the prompt's byte bound only, not counted exactly: %s "
                        "(fetching its tokenizer again in %g s)",
                        model.hex(),
                        exc,
                        self._retry_after,
                    )
                    return None
                log.info("fetched the tokenizer of model %s into %s", model.hex(), folder)
            self._counters[model] = counter
            return counter
