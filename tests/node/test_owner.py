"""Yielding to the owner: the CPU path sees a real busy process, and lets go once it stops."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import trio

from node import owner
from node.owner import ActivityMonitor, cpu_sampler, gpu_sampler

BUSY = "import os; os.nice(5)\nwhile True: pass"


def _start_foreign_busy_processes(count: int) -> list[int]:
    """Busy loops that are not our children (the node counts its own children as its own work)."""
    shell = f'for i in $(seq {count}); do {sys.executable} -c "{BUSY}" >/dev/null 2>&1 & echo $!; done'
    output = subprocess.run(
        ["sh", "-c", shell], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return [int(pid) for pid in output.split()]


@pytest.mark.integration
@pytest.mark.process
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


@pytest.mark.integration
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


@pytest.mark.integration
def test_without_the_driver_library_the_gpu_path_is_absent():
    import pynvml

    with pytest.raises(pynvml.NVMLError_LibraryNotFound):  # this machine has no GPU driver
        pynvml.nvmlInit()
    assert gpu_sampler() is None


class _NvmlError(Exception):
    pass


class _Nvml:
    """NVML as nvidia-ml-py shows it, with two GPUs whose processes the test sets."""

    NVMLError = _NvmlError

    def __init__(self, samples, running=(), devices=2):
        self.samples, self.running, self.devices, self.asked_since = samples, running, devices, []

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return self.devices

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetProcessUtilization(self, handle, since):
        self.asked_since.append((handle, since))
        if self.samples is None:
            raise _NvmlError("not supported by this driver")
        return self.samples[handle]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid) for pid in self.running]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return []


def _sample(pid, sm, at):
    return SimpleNamespace(pid=pid, smUtil=sm, timeStamp=at)


@pytest.mark.unit
def test_the_gpu_path_sums_other_processes_on_the_busiest_gpu():
    me, game, video = os.getpid(), 10**7 + 1, 10**7 + 2
    nvml = _Nvml(
        {0: [_sample(me, 90, 5), _sample(game, 30, 6)], 1: [_sample(game, 40, 7), _sample(video, 25, 8)]}
    )
    sampler = gpu_sampler(nvml)
    assert sampler() == pytest.approx(0.65)  # GPU 1: 40% + 25% by others; our own 90% never counts
    sampler()
    assert nvml.asked_since[-2:] == [(0, 6), (1, 8)]  # each GPU is asked only for samples it has not shown


@pytest.mark.unit
def test_without_samples_any_other_process_on_a_gpu_is_busy():
    assert gpu_sampler(_Nvml(None, running=[os.getpid()]))() == 0.0
    assert gpu_sampler(_Nvml(None, running=[os.getpid(), 10**7 + 3]))() == 1.0


@pytest.mark.unit
def test_no_gpu_means_no_gpu_path():
    assert gpu_sampler(_Nvml({}, devices=0)) is None
