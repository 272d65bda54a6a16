"""`dolphin relay` (cli/relay.py): options, errors, readiness file, identity, clean exit on SIGTERM."""

import pytest
from click.testing import CliRunner

from cli.main import main
from p2p.daemon import READY_FILE
from p2p.testing import relay_process


@pytest.mark.unit
def test_help_names_the_options():
    result = CliRunner().invoke(main, ["relay", "--help"])
    assert result.exit_code == 0
    for option in ("--listen", "--bootstrap", "--data-dir"):
        assert option in result.output


@pytest.mark.unit
@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "not-a-multiaddr"], "not a multiaddr"),
        (["--bootstrap", "/ip4/127.0.0.1/tcp/4001"], "/p2p/<peer-id>"),
    ],
)
def test_bad_addresses_are_reported(tmp_path, args, message):
    result = CliRunner().invoke(main, ["relay", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.unit
def test_data_dir_is_required():
    result = CliRunner().invoke(main, ["relay"])
    assert result.exit_code == 2 and "--data-dir" in result.output


@pytest.mark.process
@pytest.mark.trio
async def test_relay_serves_writes_ready_json_and_stops_cleanly(tmp_path):
    relay = relay_process(tmp_path / "relay")
    ready = await relay.wait_ready()
    assert ready["relay_service"] is True and ready["dht_mode"] == "SERVER" and ready["reachable"] is True
    assert ready["listen_addrs"][0].startswith("/ip4/127.0.0.1/tcp/")
    assert relay.stop() == 0
    assert not (relay.data_dir / READY_FILE).exists()  # a stopped relay never looks ready

    again = relay_process(tmp_path / "relay")
    try:
        assert (await again.wait_ready())["peer_id"] == ready["peer_id"]  # same identity after a restart
    finally:
        assert again.stop() == 0
