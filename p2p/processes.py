"""Our daemons as OS processes: the form the demo runs the network in, and tests and benchmarks too.

- `DaemonProcess(data_dir, args, program=...)`: `python -m <program> --data-dir DIR ARGS` in its own process
  (optionally inside a network namespace), waited on through the ready.json it writes, never with fixed
  sleeps; stopped with SIGTERM, then SIGKILL;
- `relay_process(data_dir)`: `dolphin relay` on 127.0.0.1, any free port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import trio

from runtime.ready import READY_FILE

LOCALHOST = "/ip4/127.0.0.1/tcp/0"
"""A listen address on 127.0.0.1, any free port."""


class DaemonProcess:
    """A daemon of ours (`program`: `python -m` its module and arguments) in its own process, waited on
    through the ready.json it writes, its output in <data dir>/peer.log."""

    def __init__(
        self,
        data_dir: Path,
        args: list[str],
        *,
        program: tuple[str, ...],
        netns: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / READY_FILE).unlink(missing_ok=True)
        self._log = open(self.data_dir / "peer.log", "wb")  # noqa: SIM115 (closed in stop)
        prefix = ["ip", "netns", "exec", netns] if netns else []  # `ip netns exec` execs: the pid stays ours
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", *program, "--data-dir", str(self.data_dir), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.ready: dict = {}
        self._stopping = False  # SIGTERM sent once: a second would stop it at once, skipping its drain

    @property
    def peer_id(self) -> str:
        return self.ready["peer_id"]

    @property
    def addr(self) -> str:
        """The address to dial: the first direct one, or the first relay circuit."""
        addrs = self.ready["listen_addrs"] or self.ready["circuit_addrs"]
        return addrs[0]

    def alive(self) -> bool:
        return self.process.poll() is None

    async def wait_ready(self, timeout: float = 30.0) -> dict:
        """Block until ready.json appears; P2P test failure with the peer's log if it dies first."""
        path = self.data_dir / READY_FILE
        with trio.fail_after(timeout):
            while not path.exists():
                if not self.alive():
                    raise RuntimeError(f"peer exited with {self.process.returncode}: {self.log_tail()}")
                await trio.sleep(0.05)
        self.ready = json.loads(path.read_text())
        return self.ready

    def log_tail(self, size: int = 3000) -> str:
        if not self._log.closed:  # after stop() the file is closed, and what it held is on disk
            self._log.flush()
        return (self.data_dir / "peer.log").read_bytes()[-size:].decode(errors="replace")

    def pause(self) -> None:
        """SIGSTOP: the process freezes with its sockets open (the worst kind of dead peer)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def begin_stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it was paused), without waiting: see `stop_all`."""
        if self.alive() and not self._stopping:
            self._stopping = True
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (unless `begin_stop` sent it), then SIGKILL if it does not exit within `timeout`."""
        self.begin_stop()
        if self.alive():
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def stop_all(processes: Iterable[DaemonProcess], timeout: float = 10.0) -> None:
    """Stop `processes` together: SIGTERM to each at once, then wait for each (stopped one by one, each
    waited out its drain before the next one began its own)."""
    processes = list(processes)
    for process in processes:
        process.begin_stop()
    for process in processes:
        process.stop(timeout)


def relay_process(
    data_dir: Path, extra_listen: tuple[str, ...] = (), bootstrap: tuple[str, ...] = ()
) -> DaemonProcess:
    """`dolphin relay` on 127.0.0.1, any free port (the real command line, not a stand-in), joining the
    network through `bootstrap` peers if given."""
    listen = [arg for addr in (LOCALHOST, *extra_listen) for arg in ("--listen", addr)]
    joins = [arg for addr in bootstrap for arg in ("--bootstrap", addr)]
    return DaemonProcess(data_dir, [*listen, *joins], program=("cli.main", "relay"))
