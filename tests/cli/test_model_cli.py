"""`dolphin model`: the commands print the model id and turn model errors into clear messages."""

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
    for command in ("build-tiny", "import-smollm2", "verify"):
        assert command in result.output
