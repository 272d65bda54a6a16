"""The node's self-benchmark: how fast this engine serves this model on this machine, measured at start.

One answer alone gives time to first token and prefill speed (prompt tokens / time to first token) and
single-stream decode speed; `streams` answers at once give the engine's aggregate decode speed under
batching. The prompt is fixed text cut to `prompt_tokens` ids, answered greedily, so two runs on one
machine measure the same work.

Results are cached in <data dir>/benchmark.json under a key of everything that changes the numbers:
model id, engine and its version, hardware, settings. A node restarted unchanged reuses them; a new
model, engine version, GPU or setting re-runs the benchmark. The node signs the results as two
`BenchmarkAttestation`s (1 and N streams) and publishes them on the model's attestation topic.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from node.engines.base import Engine, GenerationRequest
from protocols import envelope
from protocols.keys import Identity
from protocols.messages import BenchmarkAttestation, HardwareSummary
from runtime.files import write_atomically

__all__ = ["BENCHMARK_FILE", "BenchmarkResult", "BenchmarkSettings", "attestations", "cached_benchmark"]

BENCHMARK_FILE = "benchmark.json"
_TEXT = (
    "Dolphin Network is a decentralised network for artificial intelligence inference. GPU owners run a "
    "headless node that joins a pool of nodes serving the same model, and clients send encrypted prompts "
    "through a peer to peer overlay while validators check that every node runs what it claims. "
)

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class BenchmarkSettings:
    prompt_tokens: int = 128
    output_tokens: int = 32
    streams: int = 8


@dataclass(frozen=True)
class BenchmarkResult:
    """Speeds in tokens per second; `ttft_ms` of one answer alone."""

    key: str
    prompt_tokens: int
    output_tokens: int
    streams: int
    ttft_ms: int
    prefill_tps: float
    decode_tps: float  # one stream
    decode_tps_streams: float  # `streams` streams together
    measured_at_ms: int

    def to_json(self) -> dict:
        return asdict(self)


def benchmark_key(
    model: bytes, engine: Engine, hardware: HardwareSummary, settings: BenchmarkSettings
) -> str:
    """What the numbers depend on, hashed: a change in any part means measuring again."""
    parts = {
        "model": model.hex(),
        "engine": engine.name,
        "engine_version": engine.version,
        "capacity": engine.load().capacity,
        "hardware": hardware.to_wire(),
        "settings": asdict(settings),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


async def _prompt(engine: Engine, length: int) -> tuple[int, ...]:
    ids = await engine.tokenize(_TEXT)
    while len(ids) < length:
        ids = ids + ids
    return tuple(ids[:length])


async def _timed_answer(engine: Engine, request: GenerationRequest, on_token: Callable[[], None]) -> tuple:
    """(seconds to the first token, seconds to the last, tokens) of one answer."""
    started = time.perf_counter()
    first = last = started
    tokens = 0
    async for piece in engine.generate(request):
        if piece.token_ids:
            last = time.perf_counter()
            if not tokens:
                first = last
            tokens += len(piece.token_ids)
            for _ in piece.token_ids:
                on_token()
    return first - started, last - started, tokens


async def run_benchmark(
    engine: Engine, key: str, settings: BenchmarkSettings, progress: Progress | None = None
) -> BenchmarkResult:
    """Measure (see the module docstring); `progress(what, done, total)` follows the generated tokens."""
    prompt = await _prompt(engine, settings.prompt_tokens)
    request = GenerationRequest(prompt_ids=prompt, max_tokens=settings.output_tokens)
    total = settings.output_tokens * (1 + settings.streams)
    done = 0

    def on_token() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("benchmarking the engine", done, total)

    ttft, end, tokens = await _timed_answer(engine, request, on_token)
    decode_alone = (tokens - 1) / (end - ttft) if tokens > 1 and end > ttft else 0.0
    results: list[tuple] = []
    started = time.perf_counter()

    async def one() -> None:
        results.append(await _timed_answer(engine, request, on_token))

    async with trio.open_nursery() as nursery:
        for _ in range(settings.streams):
            nursery.start_soon(one)
    elapsed = time.perf_counter() - started
    streamed = sum(r[2] for r in results)
    return BenchmarkResult(
        key=key,
        prompt_tokens=len(prompt),
        output_tokens=settings.output_tokens,
        streams=settings.streams,
        ttft_ms=round(ttft * 1000),
        prefill_tps=len(prompt) / ttft if ttft > 0 else 0.0,
        decode_tps=decode_alone,
        decode_tps_streams=streamed / elapsed if elapsed > 0 else 0.0,
        measured_at_ms=time.time_ns() // 1_000_000,
    )


async def cached_benchmark(
    data_dir: Path,
    engine: Engine,
    *,
    model: bytes,
    hardware: HardwareSummary,
    settings: BenchmarkSettings,
    progress: Progress | None = None,
) -> tuple[BenchmarkResult, bool]:
    """The benchmark for this model/engine/hardware/settings: (result, whether it came from the cache)."""
    key = benchmark_key(model, engine, hardware, settings)
    path = Path(data_dir) / BENCHMARK_FILE
    try:
        cached = BenchmarkResult(**json.loads(path.read_text()))
        if cached.key == key:
            return cached, True
    except (OSError, ValueError, TypeError):  # missing or from an older format: measure again
        pass
    result = await run_benchmark(engine, key, settings, progress)
    write_atomically(path, json.dumps(result.to_json(), indent=2).encode() + b"\n")
    return result, False


def attestations(
    result: BenchmarkResult, identity: Identity, *, model: bytes, engine: Engine, hardware: HardwareSummary
) -> list[bytes]:
    """The signed attestations of `result`: one stream, and `streams` streams."""
    envelopes = []
    for concurrency, decode_tps in ((1, result.decode_tps), (result.streams, result.decode_tps_streams)):
        attestation = BenchmarkAttestation(
            node_key=identity.public_key,
            model=model,
            engine=engine.name,
            engine_version=engine.version[:64],
            hardware=hardware,
            prompt_tokens=result.prompt_tokens,
            output_tokens=result.output_tokens,
            concurrency=concurrency,
            prefill_tps_milli=round(result.prefill_tps * 1000),
            decode_tps_milli=round(decode_tps * 1000),
            ttft_ms=result.ttft_ms,
            measured_at_ms=result.measured_at_ms,
        )
        envelopes.append(envelope.sign(attestation, identity, ttl_ms=BenchmarkAttestation.MAX_TTL_MS))
    return envelopes
