"""`dolphin model import`'s library side: Hugging Face folders (sharded too) and hub snapshots become model
folders whose manifest names the revision and chat template; what cannot be served faithfully is refused
in one line before anything is written; the manifest's template is the one every side prompts with."""

import hashlib
import json
import shutil

import pytest
import trio

from node.errors import ModelError, ModelSourceMissing
from node.models import MANIFEST_FILE, import_model, load_manifest, verify_model_dir, write_manifest
from node.models.manifest import ModelManifest
from node.models.tiny import CHAT_TEMPLATE, write_tiny_checkpoint
from node.models.tokens import TokenizerCounter, chat_token_ids, load_tokenizer
from tests.node.test_models import PROMPT, greedy_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The tiny model as a plain Hugging Face folder, as an operator would have it: no manifest."""
    path = tmp_path_factory.mktemp("checkpoint") / "tiny-llama-hf"
    write_tiny_checkpoint(path)
    assert not (path / MANIFEST_FILE).exists()
    return path


def _copy(checkpoint, tmp_path, name="source"):
    copy = tmp_path / name
    shutil.copytree(checkpoint, copy)
    return copy


def test_a_plain_folder_is_imported_with_revision_template_and_every_files_hash(checkpoint, tmp_path):
    steps = []
    counted = []
    manifest = import_model(
        checkpoint, tmp_path / "out", revision="v1", on_step=steps.append, on_bytes=counted.append
    )
    assert steps == ["inspect", "tokenizer", "weights", "hash"]
    assert manifest.name == "tiny-llama-hf" and manifest.revision == "v1"
    assert manifest.architecture == "LlamaForCausalLM"
    assert manifest.serving.dtype == "float32" and manifest.serving.max_model_len == 2048
    assert manifest.chat_template == CHAT_TEMPLATE
    copied = sorted(p.name for p in checkpoint.iterdir())
    assert sorted(manifest.files) == copied
    for name in copied:
        assert manifest.files[name] == hashlib.sha256((checkpoint / name).read_bytes()).hexdigest()
    # Every byte is counted twice: copied, then hashed.
    assert sum(counted) == 2 * sum((checkpoint / name).stat().st_size for name in copied)
    assert verify_model_dir(tmp_path / "out") == manifest == load_manifest(tmp_path / "out")
    assert not (checkpoint / MANIFEST_FILE).exists()  # the source is only read


def test_importing_the_same_checkpoint_twice_gives_the_same_model_id(checkpoint, tmp_path, tiny_model_dir):
    first = import_model(checkpoint, tmp_path / "a", name="x")
    second = import_model(_copy(checkpoint, tmp_path, "elsewhere"), tmp_path / "b", name="x")
    assert first.model_id() == second.model_id()
    assert import_model(checkpoint, tmp_path / "c", name="y").model_id() != first.model_id()
    # The tiny fixture is this import too, with the tiny model's name and source.
    assert load_manifest(tiny_model_dir).files == first.files


def test_sharded_safetensors_import_and_answer_as_the_single_file(checkpoint, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    sharded = _copy(checkpoint, tmp_path)
    (sharded / "model.safetensors").unlink()
    AutoModelForCausalLM.from_pretrained(checkpoint).save_pretrained(sharded, max_shard_size="100KB")
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    assert len(shards) > 2 and (sharded / "model.safetensors.index.json").is_file()
    shutil.copy(checkpoint / "model.safetensors", sharded / "consolidated.safetensors")  # another layout
    (sharded / "README.md").write_text("not served")

    manifest = import_model(sharded, tmp_path / "out")
    assert set(shards) | {"model.safetensors.index.json"} <= set(manifest.files)
    assert not {"consolidated.safetensors", "README.md"} & set(manifest.files)
    ids = trio.run(greedy_ids, tmp_path / "out", PROMPT, 12)
    assert ids == trio.run(greedy_ids, tiny_model_dir, PROMPT, 12)


def test_a_hub_snapshot_names_the_repository_and_commit(checkpoint, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-chat"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for path in checkpoint.iterdir():  # the hub cache's layout: snapshot entries link to blobs
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy(path, blob)
        (snapshot / path.name).symlink_to(blob)
    manifest = import_model(snapshot, tmp_path / "out")
    assert (manifest.name, manifest.revision) == ("acme/tiny-chat", commit)
    assert not any(p.is_symlink() for p in (tmp_path / "out").iterdir())
    verify_model_dir(tmp_path / "out")


def test_a_git_checkout_is_at_the_revision_its_head_names(checkpoint, tmp_path):
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    source = _copy(checkpoint, tmp_path)
    (source / ".git" / "refs" / "heads").mkdir(parents=True)
    (source / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (source / ".git" / "refs" / "heads" / "main").write_text(commit + "\n")
    manifest = import_model(source, tmp_path / "out")
    assert manifest.revision == commit and not any(name.startswith(".git") for name in manifest.files)


def test_a_quantized_checkpoint_is_its_own_model_named_so_in_the_manifest(checkpoint, tmp_path):
    quantized = _copy(checkpoint, tmp_path, "fp8")
    config = json.loads((checkpoint / "config.json").read_text())
    fp8 = {"quant_method": "fp8", "activation_scheme": "dynamic"}
    (quantized / "config.json").write_text(json.dumps(dict(config, quantization_config=fp8)))
    manifest = import_model(quantized, tmp_path / "out", name="tiny")
    assert manifest.quantization == "fp8"
    assert manifest.model_id() != import_model(checkpoint, tmp_path / "full", name="tiny").model_id()

    (quantized / "config.json").write_text(json.dumps(dict(config, quantization_config={"bits": 4})))
    _refused(quantized, tmp_path / "again", "has a quantization_config naming no quant_method")


def _refused(src, out, match):
    with pytest.raises(ModelError, match=match) as raised:
        import_model(src, out)
    assert "\n" not in str(raised.value)
    assert not out.exists()  # refused before anything was written


def test_unknown_architecture_custom_code_and_missing_parts_are_refused_in_one_line(checkpoint, tmp_path):
    out = tmp_path / "out"
    config = json.loads((checkpoint / "config.json").read_text())

    unknown = _copy(checkpoint, tmp_path, "unknown")
    (unknown / "config.json").write_text(json.dumps(dict(config, architectures=["FancyNetForCausalLM"])))
    _refused(unknown, out, r"^unknown architecture FancyNetForCausalLM: transformers [\d.]+ has no causal")

    custom = _copy(checkpoint, tmp_path, "custom")
    (custom / "config.json").write_text(json.dumps(dict(config, auto_map={"AutoModel": "x.Model"})))
    _refused(custom, out, "needs custom code")

    no_tokenizer = _copy(checkpoint, tmp_path, "no-tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    _refused(no_tokenizer, out, r"has no tokenizer \(tokenizer.json or tokenizer.model\)$")

    no_template = _copy(checkpoint, tmp_path, "no-template")
    (no_template / "chat_template.jinja").unlink()
    _refused(no_template, out, "has no chat template")

    pickled = _copy(checkpoint, tmp_path, "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    _refused(pickled, out, r"pickled weights only \(.bin\): convert them to safetensors")

    no_config = _copy(checkpoint, tmp_path, "no-config")
    (no_config / "config.json").unlink()
    _refused(no_config, out, "has no config.json: not a Hugging Face transformers model folder")

    missing_shard = _copy(checkpoint, tmp_path, "missing-shard")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (missing_shard / "model.safetensors.index.json").write_text(json.dumps(index))
    _refused(missing_shard, out, "lacks weight shards its index names: model-00001-of-00002")

    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"\0" * 16)
    _refused(not_gguf, out, "neither a Hugging Face model folder nor a .gguf file")
    with pytest.raises(ModelSourceMissing, match="does not exist"):
        import_model(tmp_path / "nowhere", out)


def test_an_import_never_writes_into_a_folder_with_files(checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="is not empty: import into a new folder"):
        import_model(checkpoint, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(ModelError, match="must differ from the source"):
        import_model(checkpoint, checkpoint, replace=True)


def test_the_manifests_template_is_the_one_every_side_prompts_with(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    manifest = load_manifest(folder)
    assert load_tokenizer(folder).chat_template == manifest.chat_template == CHAT_TEMPLATE
    # A manifest naming another template (a different model id) prompts with it, whatever the folder's
    # template file says.
    other = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    write_manifest(folder, ModelManifest.from_dict(dict(manifest.to_dict(), chat_template=other)))
    tokenizer = load_tokenizer(folder)
    assert tokenizer.chat_template == other
    expected = tokenizer.encode("user: hello there\n", add_special_tokens=False)
    assert chat_token_ids(tokenizer, [("user", "hello there")]) == expected
    count = TokenizerCounter.from_model_dir(folder).prompt_tokens
    original = TokenizerCounter.from_model_dir(tiny_model_dir).prompt_tokens
    assert count([("user", "hello there")]) != original([("user", "hello there")])
