"""A daemon's life (`runtime.lifecycle`): ready.json while it serves, a drain that waits for the work in
flight up to its timeout unless a second signal says stop, and the one count of that work."""

import json
import os

import pytest
import trio

from runtime.lifecycle import Daemon, Drain, InFlight, claim_data_dir, drain
from runtime.ready import READY_FILE, DataDirInUse

pytestmark = [pytest.mark.unit, pytest.mark.trio]


async def test_a_drain_finishes_what_is_in_flight():
    _send, signals = trio.open_memory_channel(1)
    finished = []

    async def finish() -> None:
        await trio.sleep(0.05)
        finished.append(True)

    assert await drain(signals, finish, timeout=5) is True and finished == [True]


async def test_a_second_signal_or_the_timeout_stops_the_wait():
    send, signals = trio.open_memory_channel(1)
    never = trio.Event()
    with trio.fail_after(5):
        await send.send(15)  # the second SIGTERM arrives while the work is still in flight
        assert await drain(signals, never.wait, timeout=60) is False
    with trio.fail_after(5):
        assert await drain(signals, never.wait, timeout=0.1) is False


async def test_in_flight_counts_the_work_and_says_when_there_is_none():
    heard = []
    in_flight = InFlight(heard.append)
    in_flight.start()
    with in_flight.tracking():
        assert in_flight.count == 2
        with trio.move_on_after(0.05) as waiting:
            await in_flight.wait_idle()
        assert waiting.cancelled_caught  # work remains: not idle
    in_flight.end()
    with trio.fail_after(1):
        await in_flight.wait_idle()
    assert heard == [1, 2, 1, 0]


async def test_a_daemon_is_ready_while_it_serves_and_drains_on_the_first_signal(tmp_path):
    """ready.json (with this pid) once serving; on the first signal `draining`, then begin, the work in
    flight finished, ready.json gone and the daemon's tasks cancelled."""
    send, signals = trio.open_memory_channel(2)
    daemon = Daemon(claim_data_dir(tmp_path / "data"), signals)
    in_flight, seen = InFlight(), []

    def begin() -> None:
        seen.append(("begin", daemon.draining))

    async def work() -> None:
        with in_flight.tracking():
            await trio.sleep(0.2)
        seen.append("work done")

    stopping = Drain(begin, in_flight.wait_idle, lambda: seen.append("unfinished"), timeout=5)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)  # a daemon task the drain's end cancels
            document = await nursery.start(daemon.serve, nursery, {"peer_id": "me"}, stopping)
            ready = tmp_path / "data" / READY_FILE
            assert document == {"peer_id": "me"}
            assert json.loads(ready.read_text()) == {"peer_id": "me", "pid": os.getpid()}
            assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
            nursery.start_soon(work)
            await trio.sleep(0.05)
            await send.send(15)
    assert seen == [("begin", True), "work done"]
    assert not ready.exists()


async def test_a_timed_out_drain_says_what_is_left(tmp_path):
    send, signals = trio.open_memory_channel(2)
    daemon = Daemon(tmp_path, signals)
    seen = []
    stopping = Drain(lambda: None, trio.sleep_forever, lambda: seen.append("unfinished"), timeout=0.1)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.serve, nursery, {}, stopping)
            await send.send(15)
    assert seen == ["unfinished"] and not (tmp_path / READY_FILE).exists()


async def test_a_data_dir_another_live_daemon_serves_is_refused(tmp_path):
    (tmp_path / READY_FILE).write_text(json.dumps({"pid": os.getppid()}))  # alive, and not us
    with pytest.raises(DataDirInUse, match=f"pid {os.getppid()}"):
        claim_data_dir(tmp_path)


async def test_a_ready_file_left_by_a_dead_process_is_stale(tmp_path):
    (tmp_path / READY_FILE).write_text(json.dumps({"pid": 2**22 + 1}))  # above Linux's pid_max default
    assert claim_data_dir(tmp_path) == tmp_path
