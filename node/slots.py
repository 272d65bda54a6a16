"""A node's model slots: one per model folder it serves (`model`, then each of `extra_models`).

A slot owns its model's startup, in the daemon's order: the folder verified against its manifest (before
anything is loaded, so a damaged folder costs no engine load), its engine and that engine's benchmark
(cached per model, engine and hardware), and once the host runs, its announcer (heartbeats and the DHT
pool record, whose capacity says 0 while the service refuses) and its benchmark attestations.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from node.announce import Announcement, Announcer
from node.benchmark import BenchmarkResult, BenchmarkSettings, attestations, cached_benchmark
from node.config import NodeConfig
from node.engines.base import Engine
from node.engines.transformers import TransformersEngine
from node.engines.vllm_server import DEFAULT_VLLM_VENV, VllmSettings, open_vllm_engine
from node.errors import NodeError
from node.inference import InferenceService
from node.models.manifest import ModelManifest, verify_model_dir
from p2p import DolphinHost, P2PError, attestation_topic
from protocols.keys import Identity
from protocols.messages import HardwareSummary

__all__ = ["ModelSlot", "Progress", "open_model_slots", "verify_models"]

log = logging.getLogger("node.daemon")  # the daemon's log: operators grep one logger for its startup

Progress = Callable[[str, int, int], None]  # (step, done, total); total 0 when unknown


async def verify_models(config: NodeConfig, progress: Progress) -> list[tuple[ModelManifest, Path]]:
    """Each model folder with its manifest, verified; NodeError names a mismatched file, a model named
    twice, or `engine_url` (one vLLM server) with several models."""
    folders = _model_dirs(config)
    manifests = [await _verify_model(folder, progress) for folder in folders]
    model_ids = [manifest.model_id() for manifest in manifests]
    if len(set(model_ids)) < len(model_ids):
        raise NodeError("the same model is named twice (--model and --extra-model): serve each once")
    if len(manifests) > 1 and config.engine_url is not None:
        raise NodeError("engine_url attaches to one vLLM server, for one model: drop extra_models")
    for manifest, folder in zip(manifests, folders, strict=True):
        log.info("serving %s (model id %s) from %s", manifest.name, manifest.model_id().hex(), folder)
    return list(zip(manifests, folders, strict=True))


@dataclass(frozen=True)
class ModelSlot:
    """One model this node serves: its manifest and folder, its engine and that engine's benchmark."""

    manifest: ModelManifest
    folder: Path
    engine: Engine
    benchmark: BenchmarkResult
    hardware: HardwareSummary

    @property
    def model_id(self) -> bytes:
        return self.manifest.model_id()

    async def start(
        self,
        nursery: trio.Nursery,
        host: DolphinHost,
        identity: Identity,
        service: InferenceService,
        announcement: Callable[[ModelSlot], Announcement],
        config: NodeConfig,
    ) -> Announcer:
        """Heartbeat this model's pool (`announcement(self)` says what) and publish its attestations;
        returns the announcer (key rotations, the owner's activity and the drain republish through it)."""
        load = functools.partial(service.load_of, self.model_id)
        announcer = Announcer(
            host, identity, lambda: announcement(self), load, interval=config.heartbeat_interval
        )
        await nursery.start(announcer.serve)
        envelopes = attestations(
            self.benchmark, identity, model=self.model_id, engine=self.engine, hardware=self.hardware
        )
        nursery.start_soon(_serve_attestations, host, envelopes, self.model_id, config.attestation_interval)
        return announcer


@contextlib.asynccontextmanager
async def open_model_slots(
    config: NodeConfig,
    models: list[tuple[ModelManifest, Path]],
    hardware: HardwareSummary,
    progress: Progress,
) -> AsyncIterator[list[ModelSlot]]:
    """A slot per verified model, each with its engine loaded and benchmarked; the engines close (vLLM
    servers stopped) when the block exits."""
    settings = BenchmarkSettings(
        config.benchmark_prompt_tokens, config.benchmark_output_tokens, config.benchmark_streams
    )
    slots: list[ModelSlot] = []
    async with contextlib.AsyncExitStack() as engines:
        for index, (manifest, folder) in enumerate(models):
            progress(f"loading the engine of {manifest.name}", 0, 0)
            model_data = _model_data_dir(config, index, manifest.model_id())
            engine = await engines.enter_async_context(_open_engine(config, folder, model_data, progress))
            benchmark, cached = await cached_benchmark(
                model_data,
                engine,
                model=manifest.model_id(),
                hardware=hardware,
                settings=settings,
                progress=progress,
            )
            log.info(
                "benchmark of %s%s: time to first token %d ms, prefill %.0f tokens/s, decode %.1f tokens/s "
                "alone and %.1f tokens/s at %d streams",
                manifest.name,
                " (cached)" if cached else "",
                benchmark.ttft_ms,
                benchmark.prefill_tps,
                benchmark.decode_tps,
                benchmark.decode_tps_streams,
                benchmark.streams,
            )
            slots.append(ModelSlot(manifest, folder, engine, benchmark, hardware))
        yield slots


async def _verify_model(model: Path, progress: Progress) -> ModelManifest:
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    done = 0

    def hashed(count: int) -> None:
        nonlocal done
        done += count
        trio.from_thread.run_sync(progress, "verifying the model files", done, total)

    try:
        return await trio.to_thread.run_sync(verify_model_dir, model, hashed)
    except NodeError:
        raise
    except OSError as exc:
        raise NodeError(f"cannot read the model folder {model}: {exc}") from exc


def _model_dirs(config: NodeConfig) -> list[Path]:
    assert config.model is not None
    return [config.model, *(Path(folder).expanduser() for folder in config.extra_models)]


def _model_data_dir(config: NodeConfig, index: int, model_id: bytes) -> Path:
    """Where one model's benchmark cache and vLLM server log live: the data dir for the first model (as
    before several models existed), a folder per model id for the others."""
    if index == 0:
        return config.data_dir
    folder = config.data_dir / "models" / model_id.hex()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.asynccontextmanager
async def _open_engine(
    config: NodeConfig, model_dir: Path, log_dir: Path, progress: Progress
) -> AsyncIterator[Engine]:
    """The configured engine for `model_dir`, closed (its supervised vLLM server stopped) when the block
    exits."""
    if config.engine == "vllm":
        settings = VllmSettings(
            venv=config.vllm_venv or DEFAULT_VLLM_VENV,
            max_num_seqs=config.max_batch,
            max_model_len=config.max_model_len or None,
            tensor_parallel_size=config.tensor_parallel_size,
            pipeline_parallel_size=config.pipeline_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization or None,
        )
        async with open_vllm_engine(
            model_dir,
            server_url=config.engine_url,
            log_dir=log_dir,
            settings=settings,
            on_progress=lambda stage, _seconds: progress(f"vLLM server: {stage}", 0, 0),
        ) as vllm_engine:
            yield vllm_engine
        return
    device = None if config.device == "auto" else config.device
    threads = config.threads or None
    engine = await trio.to_thread.run_sync(
        lambda: TransformersEngine.open(
            model_dir, max_batch=config.max_batch, threads=threads, device=device, verify=False
        )
    )
    try:
        yield engine
    finally:
        with trio.CancelScope(shield=True):
            await engine.aclose()


async def _serve_attestations(
    host: DolphinHost, envelopes: list[bytes], model: bytes, interval: float
) -> None:
    """Publish the benchmark attestations now and every `interval` seconds (late joiners see them too)."""
    topic = attestation_topic(model)
    while True:
        for data in envelopes:
            try:
                await host.gossip.publish(topic, data)
            except P2PError as exc:
                log.warning("could not publish a benchmark attestation (retrying later): %s", exc)
        await trio.sleep(interval)
