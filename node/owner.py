"""Yielding to the machine's owner: is someone else using the GPU or the CPU right now?

The whitepaper's operators are gamers: with `--yield-when-busy` the node stops taking network requests
while other processes keep the machine busy, and takes them again once it is idle. "Other" means every
process but this node and its children (an engine server it supervises).

- GPU, when NVML answers (the `nvidia-ml-py` binding is a dependency; the driver's library is only on
  GPU machines): the summed SM utilisation of other processes on each GPU, from NVML's per-process
  samples; where the driver gives no samples, any other process holding the GPU counts as busy.
- CPU otherwise: the share of all cores' time spent by other processes since the last look, from
  psutil when it is installed, else /proc/stat and /proc/self/stat (this process only, no children).

Hysteresis keeps it from flapping: busy above `busy_above`, idle only below `idle_below`, each for two
looks in a row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["ActivityMonitor", "cpu_sampler", "gpu_sampler"]

log = logging.getLogger(__name__)

Sampler = Callable[[], float | None]  # share of the machine other processes use, 0..1, None: unknown


def _our_pids() -> set[int]:
    try:
        import psutil
    except ImportError:
        return {os.getpid()}
    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


def gpu_sampler(nvml: Any = None) -> Sampler | None:
    """A sampler of other processes' GPU utilisation, or None when NVML has no GPU to show here (no
    driver library, no device). `nvml` is the binding module (`pynvml` of nvidia-ml-py; tests pass a
    double)."""
    if nvml is None:
        import pynvml

        nvml = pynvml
    try:
        nvml.nvmlInit()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except nvml.NVMLError as error:  # no driver library or no GPU on this machine
        log.debug("no GPU to watch for the owner (%s): watching the CPU", error)
        return None
    if not handles:
        return None
    last_seen = [0] * len(handles)

    def sample() -> float | None:
        ours = _our_pids()
        busiest = 0.0
        for index, handle in enumerate(handles):
            try:
                samples = nvml.nvmlDeviceGetProcessUtilization(handle, last_seen[index])
                last_seen[index] = max((s.timeStamp for s in samples), default=last_seen[index])
                busiest = max(busiest, sum(s.smUtil for s in samples if s.pid not in ours) / 100)
            except nvml.NVMLError:  # no samples from this driver: whoever else holds the GPU is busy
                try:
                    running = nvml.nvmlDeviceGetGraphicsRunningProcesses(
                        handle
                    ) + nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                except nvml.NVMLError:
                    return None
                if any(p.pid not in ours for p in running):
                    busiest = 1.0
        return min(busiest, 1.0)

    return sample


def _proc_times() -> tuple[float, float, float]:
    """(busy jiffies of all cores, all jiffies, this process's jiffies) from /proc."""
    with open("/proc/stat") as stat:
        fields = [float(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    with open("/proc/self/stat") as stat:
        own = stat.read().rsplit(")", 1)[1].split()
    return total - idle, total, float(own[11]) + float(own[12])  # utime + stime


def _psutil_times() -> tuple[float, float, float] | None:
    try:
        import psutil
    except ImportError:
        return None
    machine = psutil.cpu_times()
    total = sum(machine)
    idle = machine.idle + getattr(machine, "iowait", 0.0)
    me = psutil.Process()
    own = 0.0
    for process in (me, *me.children(recursive=True)):
        try:
            times = process.cpu_times()
            own += times.user + times.system
        except psutil.Error:  # a child that just exited
            continue
    return total - idle, total, own


def cpu_sampler() -> Sampler:
    """A sampler of other processes' share of all CPU time since its previous call."""
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> tuple[float, float, float]:
        times = _psutil_times()
        if times is not None:
            return times
        busy, total, own = _proc_times()
        return busy / ticks, total / ticks, own / ticks

    previous = read()

    def sample() -> float | None:
        nonlocal previous
        current = read()
        busy, total, own = (now - before for now, before in zip(current, previous, strict=True))
        previous = current
        if total <= 0:
            return None
        return min(max((busy - own) / total, 0.0), 1.0)

    return sample


class ActivityMonitor:
    """Looks at the machine every `interval` seconds and says when the owner becomes busy or idle."""

    def __init__(
        self,
        sampler: Sampler,
        *,
        busy_above: float = 0.5,
        idle_below: float = 0.25,
        interval: float = 2.0,
        looks: int = 2,
    ) -> None:
        self.sampler = sampler
        self.busy_above = busy_above
        self.idle_below = idle_below
        self.interval = interval
        self.looks = looks
        self.busy = False
        self.last_share: float | None = None

    async def serve(self, on_change: Callable[[bool], None]) -> None:
        """Never returns; calls `on_change(busy)` when the owner's activity crosses a threshold."""
        streak = 0
        while True:
            await trio.sleep(self.interval)
            share = await trio.to_thread.run_sync(self.sampler)
            self.last_share = share
            if share is None:
                continue
            crossing = share > self.busy_above if not self.busy else share < self.idle_below
            streak = streak + 1 if crossing else 0
            if streak >= self.looks:
                streak = 0
                self.busy = not self.busy
                log.info(
                    "the owner's processes use %.0f%% of the machine: %s network requests",
                    share * 100,
                    "pausing" if self.busy else "resuming",
                )
                on_change(self.busy)
