"""MODEL as the CLI takes it (`dolphin ask -m`, `dolphin gateway -m`): a folder, an id or a name."""

import click
import pytest

from cli.model import network_model
from pool.watch import looks_like_folder

pytestmark = pytest.mark.unit


def test_paths_are_told_from_names():
    for path in ("/srv/models/x", "~/models/x", "./x", "../x"):
        assert looks_like_folder(path)
    for name in ("SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", ".hidden-name", "a" * 64):
        assert not looks_like_folder(name)


def test_a_name_or_id_passes_through_and_a_missing_folder_is_an_error_at_once(tmp_path):
    name = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert network_model(name) == (name, None)
    with pytest.raises(click.BadParameter, match="there is no model folder at"):
        network_model(str(tmp_path / "missing"))
    with pytest.raises(click.BadParameter, match="is not a model folder"):
        network_model(str(tmp_path))  # a folder, but no manifest in it
