"""`dolphin relay` (cli/relay.py): options, errors, readiness file, identity, clean exit on SIGTERM."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from p2p import HostConfig, open_host
from p2p.ports import PortInUse, check_http_address
from p2p.processes import relay_process
from runtime.ready import READY_FILE


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
    log = relay.log_tail()
    assert "stopping on SIGTERM" in log and log.rstrip().endswith("stopped"), log

    again = relay_process(tmp_path / "relay")
    try:
        assert (await again.wait_ready())["peer_id"] == ready["peer_id"]  # same identity after a restart
    finally:
        assert again.stop() == 0


def _second_relay(data_dir, port: int) -> subprocess.CompletedProcess:
    """`dolphin relay` as a user starts it, expected to refuse at once."""
    command = [sys.executable, "-m", "cli.main", "relay", "--data-dir", str(data_dir)]
    command += ["--listen", f"/ip4/127.0.0.1/tcp/{port}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])


@pytest.mark.process
@pytest.mark.trio
async def test_a_listen_port_or_data_dir_in_use_is_refused_in_one_line(tmp_path):
    """py-libp2p listens with SO_REUSEPORT: a second relay on the same port used to start and split the
    first one's connections with it. Now it is refused, and so is a second daemon in one data dir (whose
    ready.json it would overwrite, and whose exit would delete the first one's)."""
    first = relay_process(tmp_path / "first")
    ready = await first.wait_ready()
    port = int(ready["listen_addrs"][0].split("/tcp/")[1].split("/")[0])
    try:
        taken = _second_relay(tmp_path / "second", port)
        assert taken.returncode == 1, taken.stderr
        assert f"port {port} (--listen 127.0.0.1:{port}) is in use by another process" in taken.stderr
        assert "Traceback" not in taken.stderr and len(taken.stderr.strip().splitlines()) <= 2
        assert not (tmp_path / "second" / READY_FILE).exists()
        shared = _second_relay(tmp_path / "first", 0)
        assert shared.returncode == 1 and f"pid {ready['pid']}" in shared.stderr, shared.stderr
        assert (tmp_path / "first" / READY_FILE).exists() and first.alive()
    finally:
        assert first.stop() == 0


@pytest.mark.integration
@pytest.mark.trio
async def test_listeners_in_one_process_do_not_share_a_port_either(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = HostConfig(tmp_path / "a", listen=(f"/ip4/127.0.0.1/tcp/{port}",))
    async with open_host(config):
        with pytest.raises(PortInUse, match=f"port {port}"):
            async with open_host(HostConfig(tmp_path / "b", listen=config.listen)):
                pass
        # What another libp2p program does (SO_REUSEPORT) cannot join our listener: the kernel refuses it.
        with socket.socket() as intruder:
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError, match="in use"):
                intruder.bind(("127.0.0.1", port))
    with socket.socket() as other:  # and a busy port found by the check, whoever holds it
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(PortInUse, match="--local-api"):
            check_http_address(f"127.0.0.1:{other.getsockname()[1]}", "--local-api")
    check_http_address("127.0.0.1:0", "--local-api")
