"""A client takes a model's tokenizer files only as the model id names them: the manifest whose sha256 is
the id, then each file whose sha256 is the manifest's entry, within the caps. Everything else is refused."""

import hashlib
import json

import pytest

from node.models.manifest import ModelManifest, ServingHints
from protocols.errors import HashMismatch, LimitError, SchemaError
from protocols.messages import MAX_TOKENIZER_CHUNK, TokenizerFileChunk
from protocols.tokenizers import (
    MAX_MANIFEST_BYTES,
    MAX_TOKENIZER_FILE_BYTES,
    MAX_TOKENIZER_FILE_COUNT,
    FileReceiver,
    manifest_tokenizer_files,
)

pytestmark = pytest.mark.unit

TOKENIZER = b'{"model": {"type": "BPE"}}' * 20_000  # ~500 KB: more than one chunk
TEMPLATE = b"{% for m in messages %}{{ m.content }}{% endfor %}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(files: dict[str, str]) -> ModelManifest:
    return ModelManifest(
        name="tiny",
        architecture="LlamaForCausalLM",
        tokenizer_sha256="00" * 32,
        files=files,
        serving=ServingHints(max_model_len=512, dtype="float32", chat_template=True),
    )


MANIFEST = _manifest(
    {
        "model.safetensors": "11" * 32,
        "config.json": "22" * 32,
        "tokenizer.json": _sha(TOKENIZER),
        "chat_template.jinja": _sha(TEMPLATE),
        "original/tokenizer.model": "33" * 32,
    }
)
MODEL = MANIFEST.model_id()


def _chunks(data: bytes, size: int | None = None) -> list[TokenizerFileChunk]:
    size = len(data) if size is None else size
    pieces = [data[i : i + MAX_TOKENIZER_CHUNK] for i in range(0, len(data), MAX_TOKENIZER_CHUNK)] or [b""]
    return [TokenizerFileChunk(size=size, data=piece) for piece in pieces]


def _receive(receiver: FileReceiver, chunks: list[TokenizerFileChunk]) -> bytes:
    for chunk in chunks:
        receiver.receive(chunk)
    return receiver.finish()


def test_the_manifest_named_by_the_model_id_lists_its_tokenizer_files_and_no_weights():
    files = manifest_tokenizer_files(MANIFEST.canonical_json(), MODEL)
    assert files == {
        "tokenizer.json": _sha(TOKENIZER),
        "chat_template.jinja": _sha(TEMPLATE),
        "original/tokenizer.model": "33" * 32,
    }


def test_another_models_manifest_is_refused():
    other = _manifest({**MANIFEST.files, "tokenizer.json": "44" * 32})  # another tokenizer under MODEL
    with pytest.raises(HashMismatch, match=f"not the one of model {MODEL.hex()}"):
        manifest_tokenizer_files(other.canonical_json(), MODEL)
    # The same manifest in another layout is other bytes: the model id names one encoding.
    pretty = json.dumps(MANIFEST.to_dict(), indent=2, sort_keys=True).encode()
    with pytest.raises(HashMismatch):
        manifest_tokenizer_files(pretty, MODEL)


@pytest.mark.parametrize(
    "name", ["../tokenizer.json", "/etc/tokenizer.json", "a//tokenizer.json", "./tokenizer.json", "a\\..\\x"]
)
def test_a_manifest_naming_a_path_outside_the_folder_is_refused(name):
    if not name.endswith("tokenizer.json"):
        name += "/tokenizer.json"
    data = _manifest({name: "55" * 32}).canonical_json()
    with pytest.raises(SchemaError, match="outside the model folder"):
        manifest_tokenizer_files(data, hashlib.sha256(data).digest())


def test_manifests_over_the_caps_or_not_manifests_are_refused():
    huge = _manifest({f"shard-{i:06}.safetensors": "66" * 32 for i in range(12_000)}).canonical_json()
    assert len(huge) > MAX_MANIFEST_BYTES
    with pytest.raises(LimitError):
        manifest_tokenizer_files(huge, hashlib.sha256(huge).digest())
    many = _manifest({f"{i}/tokenizer.json": "77" * 32 for i in range(MAX_TOKENIZER_FILE_COUNT + 1)})
    data = many.canonical_json()
    with pytest.raises(LimitError, match="tokenizer files"):
        manifest_tokenizer_files(data, hashlib.sha256(data).digest())
    for junk in (
        b"\xff\xfe",
        b"[1, 2]",
        b'{"files": ["tokenizer.json"]}',
        b'{"files": {"tokenizer.json": 1}}',
    ):
        with pytest.raises(SchemaError):
            manifest_tokenizer_files(junk, hashlib.sha256(junk).digest())
    bad_digest = _manifest({"tokenizer.json": "not hex"}).canonical_json()
    with pytest.raises(SchemaError, match="64 hex digits"):
        manifest_tokenizer_files(bad_digest, hashlib.sha256(bad_digest).digest())


def test_a_file_arrives_in_pieces_and_is_taken_when_it_hashes_to_the_manifests_entry():
    receiver = FileReceiver("tokenizer.json", bytes.fromhex(_sha(TOKENIZER)), MAX_TOKENIZER_FILE_BYTES)
    chunks = _chunks(TOKENIZER)
    assert len(chunks) > 1
    assert _receive(receiver, chunks) == TOKENIZER
    empty = FileReceiver("special_tokens_map.json", hashlib.sha256(b"").digest(), MAX_TOKENIZER_FILE_BYTES)
    assert _receive(empty, _chunks(b"")) == b""


def test_a_tampered_file_is_refused():
    tampered = TOKENIZER.replace(b"BPE", b"BPF", 1)
    receiver = FileReceiver("tokenizer.json", bytes.fromhex(_sha(TOKENIZER)), MAX_TOKENIZER_FILE_BYTES)
    with pytest.raises(HashMismatch, match=f"tokenizer.json does not hash to {_sha(TOKENIZER)}"):
        _receive(receiver, _chunks(tampered))


def test_a_missing_file_is_refused():
    """A node that stops early, or answers with a refusal instead of the file: nothing is taken."""
    digest = bytes.fromhex(_sha(TOKENIZER))
    short = FileReceiver("tokenizer.json", digest, MAX_TOKENIZER_FILE_BYTES)
    short.receive(_chunks(TOKENIZER)[0])
    assert not short.done
    with pytest.raises(SchemaError, match="not complete"):
        short.finish()
    refused = FileReceiver("tokenizer.json", digest, MAX_TOKENIZER_FILE_BYTES)
    with pytest.raises(SchemaError, match="refusal"):
        refused.receive(TokenizerFileChunk(size=0, error="no such file"))


def test_an_oversized_reply_is_refused():
    digest = bytes.fromhex(_sha(TOKENIZER))
    over_cap = FileReceiver("tokenizer.json", digest, len(TOKENIZER) - 1)
    with pytest.raises(LimitError, match="over the limit"):
        over_cap.receive(_chunks(TOKENIZER)[0])  # refused on the announced size, before the rest comes
    past_size = FileReceiver("tokenizer.json", digest, MAX_TOKENIZER_FILE_BYTES)
    with pytest.raises(LimitError, match="more of tokenizer.json than"):
        _receive(past_size, _chunks(TOKENIZER, size=len(TOKENIZER) - 10))
    resized = FileReceiver("tokenizer.json", digest, MAX_TOKENIZER_FILE_BYTES)
    resized.receive(_chunks(TOKENIZER)[0])
    with pytest.raises(SchemaError, match="changes its size"):
        resized.receive(TokenizerFileChunk(size=len(TOKENIZER) + 1, data=b"x"))
    with pytest.raises(SchemaError, match="no data with an error"):
        TokenizerFileChunk(size=5, error="busy")
