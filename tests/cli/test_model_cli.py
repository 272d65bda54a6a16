"""`dolphin model`: the commands print the model id and turn model errors into clear messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from node.models import load_manifest


@pytest.mark.process
def test_build_tiny_then_verify_print_the_same_model_id(tmp_path):
    runner = CliRunner()
    built = runner.invoke(main, ["model", "build-tiny", str(tmp_path / "tiny")])
    assert built.exit_code == 0, built.output
    model_id = load_manifest(tmp_path / "tiny").model_id().hex()
    assert f"model id: {model_id}" in built.output

    verified = runner.invoke(main, ["model", "verify", str(tmp_path / "tiny")])
    assert verified.exit_code == 0, verified.output
    assert f"model id: {model_id}" in verified.output
    assert "verified" in verified.output


@pytest.mark.unit
def test_verify_without_manifest_says_how_to_make_one(tmp_path):
    result = CliRunner().invoke(main, ["model", "verify", str(tmp_path)])
    assert result.exit_code == 1
    assert "build or import the model with `dolphin model`" in result.output


@pytest.mark.unit
def test_help_lists_the_model_commands():
    result = CliRunner().invoke(main, ["model", "--help"])
    assert result.exit_code == 0
    for command in ("build-tiny", "import", "import-smollm2", "verify"):
        assert command in result.output


@pytest.mark.integration
def test_import_of_a_plain_folder_prints_the_model_id_of_the_manifest_it_writes(tmp_path):
    from node.models.tiny import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "hf")
    result = CliRunner().invoke(main, ["model", "import", str(tmp_path / "hf"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "out")
    assert f"model id: {manifest.model_id().hex()}" in result.output
    assert manifest.name == "hf" and manifest.chat_template


@pytest.mark.process
def test_an_unknown_architecture_is_refused_in_one_line(tiny_model_dir, tmp_path):
    source = tmp_path / "odd"
    source.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (source / "config.json").write_text(json.dumps(dict(config, architectures=["OddForCausalLM"])))
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "model", "import", str(source), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: unknown architecture OddForCausalLM:")
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_import_of_the_packaged_gguf_is_what_import_smollm2_makes(smollm2_model_dir, tmp_path):
    from node.models import find_smollm2_gguf

    args = [
        str(find_smollm2_gguf()),
        str(tmp_path / "s"),
        "--name",
        "SmolLM2-135M-Instruct",
        "--max-model-len",
        "2048",
    ]
    result = CliRunner().invoke(main, ["model", "import", *args])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "s")
    assert manifest.model_id() == load_manifest(smollm2_model_dir).model_id()
    assert manifest.revision.startswith("sha256:") and "<|im_start|>" in manifest.chat_template
