"""Yielding to the owner: the CPU path sees a real busy process, and lets go once it stops."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import trio

from node import owner
from node.owner import ActivityMonitor, cpu_sampler, gpu_sampler

pytestmark = [pytest.mark.integration, pytest.mark.process]

BUSY = "import os; os.nice(5)\nwhile True: pass"


def _start_foreign_busy_processes(count: int) -> list[int]:
    """Busy loops that are not our children (the node counts its own children as its own work)."""
    shell = f'for i in $(seq {count}); do {sys.executable} -c "{BUSY}" >/dev/null 2>&1 & echo $!; done'
    output = subprocess.run(
        ["sh", "-c", shell], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return [int(pid) for pid in output.split()]


@pytest.mark.trio
async def test_the_cpu_path_turns_busy_under_a_busy_process_and_idle_after_it():
    sampler = cpu_sampler()
    sampler()
    await trio.sleep(1.0)
    baseline = sampler()
    if baseline > 0.6:
        pytest.skip(f"other work already keeps {baseline:.0%} of this machine busy: no room to see an owner")
    threshold = (1 + baseline) / 2
    monitor = ActivityMonitor(sampler, busy_above=threshold, idle_below=threshold, interval=0.5, looks=2)
    changes: list[bool] = []
    pids = _start_foreign_busy_processes(2 * (os.cpu_count() or 1))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(monitor.serve, changes.append)
            with trio.fail_after(30):
                while changes != [True]:
                    await trio.sleep(0.1)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            with trio.fail_after(30):
                while changes != [True, False]:
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # killed above already
                os.kill(pid, signal.SIGKILL)


def test_the_proc_fallback_counts_this_process_s_own_cpu_time():
    busy_before, total_before, own_before = owner._proc_times()
    started = time.process_time()
    while time.process_time() - started < 0.5:  # half a second of our own CPU time
        sum(range(10_000))
    busy_after, total_after, own_after = owner._proc_times()
    ticks = os.sysconf("SC_CLK_TCK")
    assert (own_after - own_before) / ticks == pytest.approx(0.5, abs=0.1)
    assert busy_after - busy_before >= own_after - own_before - 2  # the machine was at least that busy
    assert total_after > total_before


def test_without_nvml_the_gpu_path_is_absent():
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert gpu_sampler() is None
    else:
        sampler = gpu_sampler()
        assert sampler is None or 0 <= (sampler() or 0) <= 1
