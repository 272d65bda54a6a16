"""Model folders: reproducible builds, manifests that catch tampering, offline deterministic generation."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from node.engines import ChatTurn, GenerationRequest
from node.engines.transformers import TransformersEngine
from node.errors import ModelError
from node.models import MANIFEST_FILE, build_tiny_model, load_manifest, verify_model_dir
from node.models.loading import load_model
from node.models.manifest import ModelManifest

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "What is the capital of France?"

GREEDY_SCRIPT = """
import json, sys, trio
from pathlib import Path
from tests.node.test_models import greedy_ids
print(json.dumps(trio.run(greedy_ids, Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))))
"""


async def greedy_ids(model_dir, prompt: str, max_tokens: int) -> list[int]:
    """Greedy answer ids from a fresh in-process engine (also run in a subprocess below)."""
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(model_dir, verify=False))
    try:
        request = GenerationRequest(messages=(ChatTurn("user", prompt),), max_tokens=max_tokens)
        return [i async for piece in engine.generate(request) for i in piece.token_ids]
    finally:
        await engine.aclose()


def _greedy_in_subprocess(model_dir, prompt, max_new_tokens):
    out = subprocess.run(
        [sys.executable, "-c", GREEDY_SCRIPT, str(model_dir), prompt, str(max_new_tokens)],
        check=True,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_tiny_model_builds_are_byte_identical(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again")
    first = sorted(p.name for p in tiny_model_dir.iterdir())
    assert first == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in first:
        assert (tiny_model_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert again.model_id() == load_manifest(tiny_model_dir).model_id()


@pytest.mark.integration
def test_tiny_model_generates_greedily_and_deterministically(tiny_model_dir):
    first = trio.run(greedy_ids, tiny_model_dir, PROMPT, 24)
    assert len(first) == 24
    assert trio.run(greedy_ids, tiny_model_dir, PROMPT, 24) == first
    # A fresh process (fresh allocator, fresh RNG) produces the same ids.
    assert _greedy_in_subprocess(tiny_model_dir, PROMPT, 24) == first


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_answers_offline_and_deterministically(smollm2_model_dir):
    manifest = verify_model_dir(smollm2_model_dir)
    assert manifest.name == "SmolLM2-135M-Instruct"
    assert manifest.architecture == "LlamaForCausalLM"
    ids = trio.run(greedy_ids, smollm2_model_dir, PROMPT, 20)
    # A real model: the answer is right, not only repeatable.
    loaded = load_model(smollm2_model_dir, verify=False)
    assert "Paris" in loaded.tokenizer.decode(ids, skip_special_tokens=True)
    assert _greedy_in_subprocess(smollm2_model_dir, PROMPT, 20) == ids


@pytest.mark.integration
def test_manifest_detects_modified_missing_and_extra_files(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert verify_model_dir(copy).model_id() == load_manifest(tiny_model_dir).model_id()

    config = copy / "config.json"
    original = config.read_bytes()
    config.write_bytes(original.replace(b'"hidden_size": 64', b'"hidden_size": 65'))
    with pytest.raises(ModelError, match="config.json was modified"):
        verify_model_dir(copy)
    config.write_bytes(original)

    (copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="unexpected \\['extra.bin'\\]"):
        verify_model_dir(copy)
    (copy / "extra.bin").unlink()

    (copy / "generation_config.json").unlink()
    with pytest.raises(ModelError, match="missing \\['generation_config.json'\\]"):
        verify_model_dir(copy)


@pytest.mark.integration
def test_manifest_hash_is_over_canonical_json(tiny_model_dir):
    manifest = load_manifest(tiny_model_dir)
    data = json.loads((tiny_model_dir / MANIFEST_FILE).read_text())
    assert ModelManifest.from_dict(data) == manifest
    import hashlib

    canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    assert manifest.model_id() == hashlib.sha256(canonical).digest()
    renamed = dict(data, name="another name")
    assert ModelManifest.from_dict(renamed).model_id() != manifest.model_id()


@pytest.mark.unit
def test_malformed_manifests_are_refused_with_model_error(tmp_path):
    with pytest.raises(ModelError, match="has no dolphin-manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_manifest(tmp_path)
    with pytest.raises(ModelError, match="unsupported manifest format"):
        ModelManifest.from_dict({"format": "other/9"})
    with pytest.raises(ModelError, match="malformed model manifest"):
        ModelManifest.from_dict({"format": "dolphin-model-manifest/1", "name": "x"})


@pytest.mark.unit
def test_manifests_without_revision_or_template_keep_their_hash():
    data = {
        "format": "dolphin-model-manifest/1",
        "name": "old",
        "architecture": "LlamaForCausalLM",
        "tokenizer_sha256": "00" * 32,
        "files": {"config.json": "11" * 32},
        "serving": {"max_model_len": 64, "dtype": "float32", "chat_template": True, "engines": ["vllm"]},
        "source": "",
    }
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    assert ModelManifest.from_dict(data).model_id() == hashlib.sha256(canonical).digest()
    with_revision = ModelManifest.from_dict(dict(data, revision="abc"))
    assert with_revision.to_dict()["revision"] == "abc"
    assert with_revision.model_id() != ModelManifest.from_dict(data).model_id()
