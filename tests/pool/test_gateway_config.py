"""The gateway's settings: defaults, file, environment and options in that order, and refusals."""

import pytest

from pool.gateway_config import CONFIG_FILE, GatewayConfig, GatewayConfigError, load_config, render_config

pytestmark = pytest.mark.unit


def test_every_setting_round_trips_through_the_file_and_the_environment_wins(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.write_text(render_config(GatewayConfig(data_dir=tmp_path)))
    assert load_config(path) == GatewayConfig(data_dir=tmp_path)
    path.write_text('models = ["a", "b"]\nprices = { a = "0.25" }\nnodes = "bonded"\n')
    config = load_config(
        environ={"DOLPHIN_GATEWAY_DATA_DIR": str(tmp_path), "DOLPHIN_GATEWAY_NODES": "registered"},
        overrides={"http": "0.0.0.0:9000", "api_key": "sk-x"},
    )
    assert config.models == ("a", "b") and config.nodes == "registered" and config.http == "0.0.0.0:9000"
    assert config.price_of(b"\1" * 32, "a") == "0.25" and config.price_of(b"\1" * 32, "z") == "0"
    assert config.price_of(b"\1" * 32, "z") == GatewayConfig().default_price


def test_bad_settings_are_refused_naming_them(tmp_path):
    for text, message in [
        ('nodes = "friends"\n', "nodes"),
        ('http = "8080"\n', "HOST:PORT"),
        ("max_attempts = 0\n", "max_attempts"),
        ('prices = { m = "-1" }\n', "price"),
        ("colour = 1\n", "unknown"),
        ('max_tokens_limit = "lots"\n', "max_tokens_limit"),
    ]:
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(GatewayConfigError, match=message):
            load_config(path)


def test_a_bind_other_machines_reach_needs_an_api_key(tmp_path):
    """Attack: `--http 0.0.0.0:PORT` without a key lets anyone on the network spend the operator's credit."""
    for exposed in ("0.0.0.0:8080", "192.168.1.5:8080", "[::]:8080"):
        with pytest.raises(GatewayConfigError, match="set api_key"):
            GatewayConfig(data_dir=tmp_path, http=exposed)
        assert GatewayConfig(data_dir=tmp_path, http=exposed, api_key="sk-1").api_key == "sk-1"
    for local in ("127.0.0.1:8080", "localhost:0", "[::1]:8080", "127.0.0.2:1"):
        assert GatewayConfig(data_dir=tmp_path, http=local).api_key is None
