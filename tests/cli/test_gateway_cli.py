"""`dolphin gateway`: help, init, and settings refused before anything starts."""

import pytest
from click.testing import CliRunner

from cli.main import main
from pool.gateway_config import CONFIG_FILE, GatewayConfig, load_config

pytestmark = pytest.mark.unit


def _run(*args: str, expect: int = 0, env: dict | None = None) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == expect, (args, result.output, result.exception)
    return result.output


def test_help_names_the_options_and_init():
    output = _run("gateway", "--help")
    for word in ("--bootstrap", "--http", "--data-dir", "--api-key", "--model", "--nodes", "init"):
        assert word in output
    # Every option with a default shows it (the defaults a config file would otherwise have to say).
    for default in ("[default: 127.0.0.1:8080]", "[default: auto]", "[default: 30.0]"):
        assert default in " ".join(output.split()), default


def test_init_writes_every_default_once(tmp_path):
    assert str(tmp_path / CONFIG_FILE) in _run("gateway", "init", "--data-dir", str(tmp_path))
    assert load_config(tmp_path / CONFIG_FILE) == GatewayConfig(data_dir=tmp_path)
    assert "exists" in _run("gateway", "init", "--data-dir", str(tmp_path), expect=1)


def test_bad_settings_stop_it_before_it_starts(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("max_attempts = 0\n")
    assert "max_attempts must be positive" in _run("gateway", "--config", str(bad), expect=1)
    output = _run("gateway", "--data-dir", str(tmp_path), env={"DOLPHIN_GATEWAY_NODES": "friends"}, expect=2)
    assert "Invalid value for '--nodes'" in output
    (tmp_path / CONFIG_FILE).write_text('nodes = "friends"\n')
    assert "nodes must be auto, any" in _run("gateway", "--data-dir", str(tmp_path), expect=1)
