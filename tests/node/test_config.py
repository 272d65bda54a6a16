"""The node's settings: defaults written out in full, the file read back, options over file over defaults."""

import tomllib
from pathlib import Path

import pytest

from node.config import CONFIG_FILE, ConfigError, NodeConfig, load_config, render_config

pytestmark = pytest.mark.unit


def test_the_rendered_file_names_every_setting_with_its_default_and_reads_back_as_the_defaults(tmp_path):
    text = render_config(NodeConfig(data_dir=tmp_path))
    for name in NodeConfig.__dataclass_fields__:
        assert f"{name} = " in text, name
    assert text.count("\n# ") >= len(NodeConfig.__dataclass_fields__)  # a comment above each
    path = tmp_path / CONFIG_FILE
    path.write_text(text)
    assert load_config(path) == NodeConfig(data_dir=tmp_path)
    tomllib.loads(text)  # valid TOML, unset optional settings commented out


def test_options_beat_the_file_which_beats_the_defaults(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(
        'max_batch = 4\nlisten = []\nserve_unpaid = false\nengine = "transformers"\n'
    )
    config = load_config(overrides={"data_dir": tmp_path, "max_batch": 2})
    assert config.max_batch == 2  # option
    assert config.listen == () and config.serve_unpaid is False  # file
    assert config.heartbeat_interval == NodeConfig().heartbeat_interval  # default
    assert load_config(overrides={"data_dir": tmp_path / "elsewhere"}).max_batch == 16  # no file there


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_bach = 3\n", "unknown setting"),
        ('max_batch = "many"\n', "max_batch"),
        ("max_batch = 0\n", "max_batch must be positive"),
        ('local_api = "0.0.0.0:80"\n', "127.0.0.1"),
        ("serve_unpaid = 1\n", "true or false"),
        ('listen = "/ip4/1.2.3.4/tcp/1"\n', "expected a list"),
        ("idle_below = 0.9\n", "idle_below"),
        ('engine = "llama.cpp"\n', "unknown engine"),
        ("not toml = = \n", "cannot read"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(tmp_path, text, message):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_paths_expand_the_home_directory():
    assert NodeConfig().data_dir == Path("~/.dolphin/node").expanduser()
