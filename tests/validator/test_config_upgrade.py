"""A validator.toml written by an earlier release still loads after an upgrade."""

import logging

import pytest

from validator.config import CONFIG_FILE, ValidatorConfig, load_config, render_config
from validator.errors import ValidatorConfigError

pytestmark = pytest.mark.unit


def test_a_retired_setting_is_dropped_with_a_warning_not_refused(tmp_path, caplog):
    path = tmp_path / CONFIG_FILE
    path.write_text(render_config(ValidatorConfig(data_dir=tmp_path)) + "slash_bps = 5000\n")
    with caplog.at_level(logging.WARNING):
        assert load_config(path) == ValidatorConfig(data_dir=tmp_path)
    assert "setting slash_bps is no longer used" in caplog.text and "Slashing.slashBps" in caplog.text
    path.write_text("slash_bpss = 5000\n")  # a typo is still an unknown setting
    with pytest.raises(ValidatorConfigError, match="unknown setting"):
        load_config(path)
