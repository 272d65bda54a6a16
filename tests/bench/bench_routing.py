"""routing: the light client's router against uniformly random choice, and the gateway against a node's
own local API, in one run on this machine.

Three `dolphin node` processes serve the tiny model through a relay; two of them are made slower by a
fixed delay per token (`tests/bench/slow_node.py`: 0, 40 and 160 ms), so the pool has a fast, a middling
and a slow node, each answering up to 16 streams at once. One light client (this process) sends
`STREAMS` concurrent streaming requests of `MAX_TOKENS` tokens, in rounds that alternate between the
router (power of two choices on attested and observed speed, load and errors) and a router that picks
uniformly at random among the same eligible nodes; each router round starts fresh and learns from a
warm-up of `WARMUP` requests first. Reported per arm, pooled over its rounds: p50/p99 of a request's
time to its last token, time to first token, throughput (tokens delivered / wall time), requests lost
(goal: 0), and each node's share; and p99(router) / p99(random) (goal ≤ 0.5).

Then the two slow nodes drain away and `dolphin gateway` starts; requests alternate between the fast
node's local API and the gateway (both OpenAI streaming over HTTP on 127.0.0.1): the gateway's
tokens/s ÷ the local API's, and the time to first token it adds (medians).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio

from node.models import build_tiny_model
from node.processes import node_process
from p2p.processes import relay_process
from p2p.testing import PeerProcess
from pool.errors import PoolError
from pool.light import LightConfig, LightSettings, open_light_client
from pool.routing import Candidate, Preferences, Router
from pool.watch import WatchSettings

DELAYS_MS = (0, 40, 160)
STREAMS = 120
MAX_TOKENS = 16
WARMUP = 30
ROUNDS = 2
OVERHEAD_REQUESTS = 15
OVERHEAD_TOKENS = 64
PROMPTS = (
    "Write a long story about a dolphin who learns to sing.",
    "Explain in detail how the tides work.",
    "Describe a walk through a busy market on a summer morning.",
    "What should a beginner know about sailing? Give many tips.",
)


ANY_NODE = Preferences()


class UniformRouter(Router):
    """The baseline: any eligible node, uniformly at random (same eligibility, breaker and failover)."""

    def choose(  # type: ignore[no-untyped-def]
        self, candidates, preferences: Preferences = ANY_NODE, *, now, exclude=(), conversation=None
    ) -> Candidate | None:
        eligible = self.eligible(candidates, preferences, now=now, exclude=exclude)
        if not eligible:
            return None
        chosen = self.rng.choice(eligible)
        self.record(chosen.peer_id).in_flight += 1
        return chosen


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _burst(client, model: bytes, streams: int) -> dict:  # type: ignore[no-untyped-def]
    """`streams` concurrent requests; per-request latency, TTFT, node, and what was lost."""
    latencies, ttfts, nodes, lost = [], [], [], []
    tokens = 0

    async def one(index: int) -> None:
        nonlocal tokens
        started = time.perf_counter()
        first = None
        try:
            async with client.stream(
                model, [("user", PROMPTS[index % len(PROMPTS)])], max_tokens=MAX_TOKENS
            ) as answer:
                async for piece in answer:
                    if first is None and piece.token_ids:
                        first = time.perf_counter() - started
            result = answer.result
        except PoolError as exc:
            lost.append(str(exc))
            return
        latencies.append(time.perf_counter() - started)
        ttfts.append(first or 0.0)
        nodes.append(result.node)
        tokens += result.tokens_delivered

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(streams):
            nursery.start_soon(one, index)
    return {
        "latencies": latencies,
        "ttfts": ttfts,
        "nodes": nodes,
        "lost": lost,
        "tokens": tokens,
        "wall": time.perf_counter() - started,
    }


def _summary(bursts: list[dict], names: dict[str, str]) -> dict:
    latencies = [x for b in bursts for x in b["latencies"]]
    ttfts = [x for b in bursts for x in b["ttfts"]]
    nodes = [names[n] for b in bursts for n in b["nodes"]]
    return {
        "requests": len(latencies) + sum(len(b["lost"]) for b in bursts),
        "lost": sum(len(b["lost"]) for b in bursts),
        "latency_p50_s": round(_percentile(latencies, 0.5), 3),
        "latency_p99_s": round(_percentile(latencies, 0.99), 3),
        "ttft_p50_s": round(_percentile(ttfts, 0.5), 3),
        "ttft_p99_s": round(_percentile(ttfts, 0.99), 3),
        "throughput_tokens_per_s": round(
            sum(b["tokens"] for b in bursts) / sum(b["wall"] for b in bursts), 1
        ),
        "share": {
            name: round(nodes.count(name) / max(len(nodes), 1), 3) for name in sorted(set(names.values()))
        },
    }


async def _routing(relay, model: bytes, names: dict[str, str], work: Path) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    config = LightConfig(
        bootstrap=(relay.addr,),
        data_dir=work / "client",
        settings=LightSettings(stall_timeout=30),
        watch=WatchSettings(first_discovery_interval=0.3),
    )
    results: dict[str, list[dict]] = {"router": [], "random": []}
    async with open_light_client(config) as client:
        with trio.fail_after(120):
            while len(client.watcher.candidates(model)) < len(names) or not all(
                c.attested_tokens_per_s for c, _ in client.watcher.candidates(model)
            ):
                await client.watcher.wait_for_members(model, 5)
                await trio.sleep(0.5)
        for _ in range(ROUNDS):
            for arm, kind in (("router", Router), ("random", UniformRouter)):
                client.router = kind()
                await _burst(client, model, WARMUP)
                results[arm].append(await _burst(client, model, STREAMS))
                print(f"  {arm}: p99 {_percentile(results[arm][-1]['latencies'], 0.99):.2f} s", flush=True)
    return _summary(results["router"], names), _summary(results["random"], names)


async def _openai_stream(
    http: httpx.AsyncClient, url: str, body: dict, headers: dict
) -> tuple[float, float, int]:
    """(time to first token, total time, completion tokens) of one streamed request."""
    started = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif first is None and event["choices"] and event["choices"][0].get("delta", {}).get("content"):
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started, tokens


async def _overhead(local_url: str, gateway_url: str, model_name: str) -> dict:
    body = {
        "model": model_name,
        "messages": [{"role": "user", "content": "Tell me a story about the sea."}],
        "max_tokens": OVERHEAD_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    runs: dict[str, list[tuple[float, float, int]]] = {"local": [], "gateway": []}
    async with httpx.AsyncClient(timeout=120) as http:
        for _ in range(OVERHEAD_REQUESTS + 1):  # the first pair warms both paths up and is dropped
            runs["local"].append(await _openai_stream(http, local_url + "/v1/chat/completions", body, {}))
            runs["gateway"].append(await _openai_stream(http, gateway_url + "/v1/chat/completions", body, {}))
    local, gateway = runs["local"][1:], runs["gateway"][1:]
    local_tps = statistics.median(t / total for _, total, t in local)
    gateway_tps = statistics.median(t / total for _, total, t in gateway)
    return {
        "requests": len(local),
        "local_api_tokens_per_s": round(local_tps, 1),
        "gateway_tokens_per_s": round(gateway_tps, 1),
        "tokens_per_s_ratio": round(gateway_tps / local_tps, 3),
        "local_api_ttft_ms": round(statistics.median(f for f, _, _ in local) * 1000, 1),
        "gateway_ttft_ms": round(statistics.median(f for f, _, _ in gateway) * 1000, 1),
        "added_ttft_ms": round(
            (statistics.median(f for f, _, _ in gateway) - statistics.median(f for f, _, _ in local)) * 1000,
            1,
        ),
    }


def _plot(router: dict, random_: dict, bursts_note: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    arms = ("router", "random")
    for key, label in (("latency_p50_s", "p50"), ("latency_p99_s", "p99")):
        left.bar(
            [f"{a}\n{label}" for a in arms], [router[key], random_[key]], color=["tab:blue", "tab:orange"]
        )
    left.set_ylabel("seconds to the last token")
    left.set_title(f"{STREAMS} concurrent streams, {MAX_TOKENS} tokens each")
    names = sorted(router["share"])
    width = 0.4
    xs = range(len(names))
    right.bar([x - width / 2 for x in xs], [router["share"][n] for n in names], width, label="router")
    right.bar([x + width / 2 for x in xs], [random_["share"][n] for n in names], width, label="random")
    right.set_xticks(list(xs), names)
    right.set_ylabel("share of requests")
    right.set_title(bursts_note)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run(out_dir: Path) -> dict:
    os.environ["DOLPHIN_NODE_ATTESTATION_INTERVAL"] = "2"  # the client joins after start: republish often
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as temporary:
        work = Path(temporary)
        manifest = build_tiny_model(work / "tiny")
        model = manifest.model_id()
        relay = relay_process(work / "relay")
        nodes = []
        gateway = None
        try:
            trio.run(relay.wait_ready)
            for delay in DELAYS_MS:
                program = ("tests.bench.slow_node", "--token-delay-ms", str(delay))
                nodes.append(
                    node_process(
                        work / f"node-{delay}ms", work / "tiny", "--bootstrap", relay.addr, program=program
                    )
                )

            async def ready() -> None:
                async with trio.open_nursery() as nursery:
                    for node in nodes:
                        nursery.start_soon(node.wait_ready, 300.0)

            trio.run(ready)
            names = {node.peer_id: f"{delay} ms/token" for node, delay in zip(nodes, DELAYS_MS, strict=True)}
            router, random_ = trio.run(_routing, relay, model, names, work)
            for node in nodes[1:]:
                node.stop()
            gateway = PeerProcess(
                work / "gateway",
                ["--bootstrap", relay.addr, "--http", "127.0.0.1:0", "--model", model.hex()],
                program=("cli.main", "gateway"),
            )
            trio.run(gateway.wait_ready, 60.0)
            overhead = trio.run(_overhead, nodes[0].ready["local_api"], gateway.ready["http"], manifest.name)
        finally:
            if gateway is not None:
                gateway.stop()
            for node in nodes:
                node.stop()
            relay.stop()
    _plot(router, random_, "who answered", out_dir / "routing.png")
    return {
        "nodes_ms_per_token": list(DELAYS_MS),
        "streams": STREAMS,
        "max_tokens": MAX_TOKENS,
        "rounds_per_arm": ROUNDS,
        "router": router,
        "random": random_,
        "p99_router_over_random": round(router["latency_p99_s"] / random_["latency_p99_s"], 3),
        "gateway_overhead": overhead,
        "plot": str(out_dir / "routing.png"),
    }
