"""A daemon's drain: it waits for the work in flight, up to its timeout, unless a second signal says stop."""

import pytest
import trio

from p2p.daemon import drain

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
