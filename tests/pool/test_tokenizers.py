"""A client without the model's folder fetches its manifest and tokenizer files from pool members
(TOKENIZER_PROTOCOL, served by node.tokenizer_files), takes them only as the model id names them, and
counts bills with them. Members that serve another manifest, tampered or missing files, too much, or
nothing are passed over. Hosts joined in memory (`p2p.memory`), the tiny model's real tokenizer."""

import contextlib
import dataclasses
import os
import shutil

import pytest
import trio

from cli.model import load_counter
from node.models import load_manifest
from node.models.tokens import TokenizerCounter
from node.tokenizer_files import TokenizerFileServer
from p2p.memory import open_memory_network
from pool.errors import TokenizerUnavailable
from pool.tokenizers import TokenizerCache, fetch_tokenizer
from protocols.ids import TOKENIZER_PROTOCOL
from protocols.messages import TokenizerFileChunk, TokenizerFileRequest
from protocols.schema import decode_message, encode_message
from protocols.tokenizers import MANIFEST_FILE, MAX_TOKENIZER_FILE_BYTES, tokenizer_entries

pytestmark = pytest.mark.integration

CHAT = [("system", "Be brief."), ("user", "Name three rivers of Europe, please.")]


def _tokenizer_folder(src, dest, *, skip=()):  # type: ignore[no-untyped-def]
    """A copy of `src`'s manifest and tokenizer files (those in `skip` left out)."""
    manifest = load_manifest(src)
    dest.mkdir(parents=True)
    for name in [MANIFEST_FILE, *tokenizer_entries(manifest.files)]:
        if name not in skip:
            shutil.copyfile(src / name, dest / name)
    return dest


def _answering(manifest: bytes, *, file_size: int = 1):  # type: ignore[no-untyped-def]
    """A member that sends `manifest` as the manifest, and announces every other file as `file_size`
    bytes, sending one."""

    async def handle(stream) -> None:  # type: ignore[no-untyped-def]
        request = decode_message(await stream.read_message(512), TokenizerFileRequest)
        if request.path == MANIFEST_FILE:
            chunk = TokenizerFileChunk(size=len(manifest), data=manifest)
        else:
            chunk = TokenizerFileChunk(size=file_size, data=b"{")
        await stream.write_message(encode_message(chunk))
        await stream.close()

    return handle


async def _stalling(stream) -> None:  # type: ignore[no-untyped-def]
    await stream.read_message(512)
    await trio.sleep_forever()


@contextlib.asynccontextmanager
async def _members(*handlers):  # type: ignore[no-untyped-def]
    """A client connected to one member per handler; yields (client, member peer ids)."""
    async with open_memory_network() as network:
        client, *members = (network.host() for _ in range(1 + len(handlers)))
        for host, handler in zip(members, handlers, strict=True):
            host.set_stream_handler(TOKENIZER_PROTOCOL, handler)
            await client.connect_any(host.peer_id, host.listen_addrs())
        yield client, [host.peer_id for host in members]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_manifest(tiny_model_dir).model_id()


@pytest.fixture(scope="module")
def exact(tiny_model_dir):
    return TokenizerCounter.from_model_dir(tiny_model_dir).prompt_tokens(CHAT)


def _server(folder):  # type: ignore[no-untyped-def]
    return TokenizerFileServer([(load_manifest(folder), folder)]).handle


@pytest.mark.trio
async def test_a_client_fetches_the_tokenizer_caches_it_and_counts_exactly(
    tmp_path, tiny_model_dir, model, exact
):
    manifest = load_manifest(tiny_model_dir)
    async with _members(_server(tiny_model_dir)) as (client, (member,)):
        files = await fetch_tokenizer(client, model, [member])
        # The manifest (its canonical JSON: the model id's preimage) and the tokenizer files, never weights.
        assert files[MANIFEST_FILE] == manifest.canonical_json()
        assert set(files) == {MANIFEST_FILE, *tokenizer_entries(manifest.files)}
        assert "model.safetensors" not in files and "config.json" not in files
        for name in tokenizer_entries(manifest.files):
            assert files[name] == (tiny_model_dir / name).read_bytes()

        cache = TokenizerCache(tmp_path / "cache", load_counter)
        counter = await cache.counter(client, model, [member])
        assert counter is not None and counter.prompt_tokens(CHAT) == exact
        folder = tmp_path / "cache" / model.hex()
        assert (folder.stat().st_mode & 0o777) == 0o700 and (
            tmp_path / "cache"
        ).stat().st_mode & 0o777 == 0o700

        # A later client uses the cache without asking anyone; one whose cache was tampered with fetches
        # again, and without a member to ask it has no counter (the byte bound only).
        later = await TokenizerCache(tmp_path / "cache", load_counter).counter(client, model, [])
        assert later is not None and later.prompt_tokens(CHAT) == exact
        (folder / "tokenizer.json").write_text("{}")
        assert await TokenizerCache(tmp_path / "cache", load_counter).counter(client, model, []) is None
        again = await TokenizerCache(tmp_path / "cache", load_counter).counter(client, model, [member])
        assert again is not None and again.prompt_tokens(CHAT) == exact
        assert (folder / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()


@pytest.mark.trio
async def test_members_serving_anything_but_the_models_files_are_refused(
    tmp_path, tiny_model_dir, model, exact
):
    manifest = load_manifest(tiny_model_dir)
    tampered = _tokenizer_folder(tiny_model_dir, tmp_path / "tampered")
    tokenizer = tampered / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes() + b" ")  # other bytes under the genuine manifest
    missing = _tokenizer_folder(tiny_model_dir, tmp_path / "missing", skip=("tokenizer.json",))
    other = dataclasses.replace(
        manifest, chat_template="{{ 'another template' }}"
    )  # another model's manifest
    liars = {
        "tampered": (
            _server(tampered),
            f"tokenizer.json does not hash to {manifest.files['tokenizer.json']}",
        ),
        "another manifest": (
            _answering(other.canonical_json()),
            f"dolphin-manifest.json does not hash to {model.hex()}",
        ),
        "missing file": (_server(missing), "refused tokenizer.json: that file is not available"),
        "oversized": (
            _answering(manifest.canonical_json(), file_size=MAX_TOKENIZER_FILE_BYTES + 1),
            "chat_template.jinja of 67108865 bytes is over the limit",
        ),
        "stalling": (_stalling, "not complete within 2 s"),
        "not serving the model": (
            TokenizerFileServer([(other, tiny_model_dir)]).handle,
            "this node does not serve that model",
        ),
    }
    handlers = [handler for handler, _ in liars.values()]
    async with _members(*handlers, _server(tiny_model_dir)) as (client, peers):
        *lying, honest = peers
        for (_, why), peer in zip(liars.values(), lying, strict=True):
            with pytest.raises(TokenizerUnavailable, match=why):
                await fetch_tokenizer(client, model, [peer], member_timeout=2)
        # Each liar is passed over for the next member, until one serves the model's own files.
        files = await fetch_tokenizer(client, model, [*lying, honest], member_timeout=2)
        assert files["tokenizer.json"] == (tiny_model_dir / "tokenizer.json").read_bytes()
        # A client that meets only liars has no counter (its bills fall back to the byte bound), writes
        # nothing, and asks again only after `retry_after`.
        cache = TokenizerCache(tmp_path / "cache", load_counter, member_timeout=2, retry_after=3600)
        assert await cache.counter(client, model, lying) is None
        assert not (tmp_path / "cache" / model.hex()).exists()
        assert await cache.counter(client, model, [honest]) is None
        fresh = TokenizerCache(tmp_path / "cache", load_counter)
        counter = await fresh.counter(client, model, [lying[0], honest])
        assert counter is not None and counter.prompt_tokens(CHAT) == exact
    assert os.listdir(tmp_path / "cache") == [model.hex()]


@pytest.mark.trio
async def test_a_transfer_the_transport_broke_is_tried_once_more(tmp_path, tiny_model_dir, model, exact):
    """CI: py-libp2p closed one of two connections dialled at once under the client's first tokenizer
    stream; the client gave up on the pool's only member and countersigned a bill inflated within the
    byte bound."""
    serve = _server(tiny_model_dir)
    streams = []

    async def broken_once(stream) -> None:  # type: ignore[no-untyped-def]
        streams.append(stream)
        if len(streams) == 1:
            await stream.reset()  # the connection under it went away
            return
        await serve(stream)

    async with _members(broken_once) as (client, (member,)):
        counter = await TokenizerCache(tmp_path / "cache", load_counter).counter(client, model, [member])
        assert counter is not None and counter.prompt_tokens(CHAT) == exact
        files = tokenizer_entries(load_manifest(tiny_model_dir).files)
        assert len(streams) == 1 + 1 + len(files)  # the broken try, then the manifest and each file


@pytest.mark.trio
async def test_when_every_member_withholds_the_files_the_validators_serve_them(
    tmp_path, tiny_model_dir, model, exact
):
    async def refusing(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.reset()

    async with _members(refusing, _stalling, _server(tiny_model_dir)) as (client, peers):
        *withholding, validator = peers
        asked = []

        async def validators() -> list[str]:
            asked.append(True)
            return [validator, *withholding]  # the members are not asked twice

        # Without the validators, such a pool holds every bill to the byte bound.
        cache = TokenizerCache(tmp_path / "alone", load_counter, member_timeout=2)
        assert await cache.counter(client, model, withholding) is None
        cache = TokenizerCache(tmp_path / "cache", load_counter, member_timeout=2)
        counter = await cache.counter(client, model, withholding, validators)
        assert counter is not None and counter.prompt_tokens(CHAT) == exact and asked == [True]
        # A pool whose members serve them never costs the validators a question.
        member_served = TokenizerCache(tmp_path / "served", load_counter)
        assert await member_served.counter(client, model, [validator], validators) is not None
        assert asked == [True]
