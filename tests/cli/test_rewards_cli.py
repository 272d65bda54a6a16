"""`dolphin rewards`: close-epoch reproduces the spec's worked example; simulate writes a plot and a table."""

import json

import pytest
from click.testing import CliRunner

from chain.rewards import RewardParams
from chain.rewards.simulate import format_table, simulate
from cli.main import main
from tests.conftest import spec_path

pytestmark = pytest.mark.unit


def test_close_epoch_file_to_file_is_byte_identical(tmp_path):
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        main, ["rewards", "close-epoch", str(spec_path("rewards-example.json")), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == spec_path("rewards-example.out.json").read_bytes()


def test_close_epoch_stdin_to_stdout_is_byte_identical():
    runner = CliRunner()
    result = runner.invoke(
        main, ["rewards", "close-epoch"], input=spec_path("rewards-example.json").read_bytes()
    )
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == spec_path("rewards-example.out.json").read_bytes()


def test_close_epoch_bad_document_says_what_and_where(tmp_path):
    document = json.loads(spec_path("rewards-example.json").read_text())
    document["accounts"]["0x0000000000000000000000000000000000000003"]["input"]["active_bond"] = 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["rewards", "close-epoch", str(bad), "-o", str(out)])
    assert result.exit_code == 1
    assert "account '0x0000000000000000000000000000000000000003': input.active_bond" in result.output
    assert "Fix the input document" in result.output
    assert not out.exists()


def test_close_epoch_missing_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["rewards", "close-epoch", str(tmp_path / "absent.json")])
    assert result.exit_code == 2
    assert "No such file or directory" in result.output


def test_simulate_prints_the_table_behind_the_png(tmp_path):
    png = tmp_path / "plot.png"
    result = CliRunner().invoke(
        main, ["rewards", "simulate", "--accounts", "60", "--seed", "5", "-o", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    expected = format_table(simulate(60, 5, 21, RewardParams()))
    assert result.output == f"{expected}\nplot: {png}\n"


def test_simulate_attacks_shows_ban_farming_and_report_sniping_never_pay():
    result = CliRunner().invoke(main, ["rewards", "simulate", "--attacks", "--nodes", "3", "--bond", "20000"])
    assert result.exit_code == 0, result.output
    lines = {line[:48].strip(): line[48:].split() for line in result.output.splitlines()[1:]}
    assert lines["ban farming: 3 unbonded nodes, self-reported"] == ["0.00", "0.00", "0.00"]
    # Three 50% slashes of 20,000 POD; back: the 10% cut and a 100 POD validator award each.
    assert lines["ban farming: 3 bonded nodes, self-reported"] == ["30000.00", "3300.00", "-26700.00"]
    assert lines["report sniping: first report, another answer"] == ["0.00", "0.00", "0.00"]
    assert "catching it pays an award of 0" in result.output.splitlines()[-1]
