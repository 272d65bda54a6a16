"""node: what serving through the network costs, against the same engine called directly, in one run.

- throughput: tokens/s of N concurrent answers through the network (client → libp2p → the node's
  inference service → engine, encrypted, receipts countersigned and committed to the ledger) ÷ the same
  N answers asked of the engine directly, at 1 and 16 streams (goal ≥ 0.95 at 16);
- time to first token the network adds, to a node dialled directly and to one reachable only through a
  relay (goals ≤ 15 ms and ≤ 30 ms): median over sequential one-token answers of the client's wait for
  the first token minus the node's own (its receipt's first_token_ms), so the engine's variation cancels;
- the engine's batched throughput at 16 streams ÷ the same 16 answers one at a time (max_batch 1).

Everything runs in this process on 127.0.0.1 (node, relay and client hosts share one trio loop with the
engine's scheduler thread), so the network side (the client's too) competes with the engine for the same
cores and the GIL: the ratios are pessimistic for a real node whose clients are elsewhere, the more so the
faster the model (the tiny model makes thousands of tokens a second, so per-token costs of the network
path show; a real model's step dwarfs them). Direct and network runs alternate and medians are compared.

Engines are opened by name from ENGINES, so another engine (vLLM over HTTP) is measured by adding its
opener there and naming it in $DOLPHIN_BENCH_NODE_ENGINES (comma-separated, default "transformers"). The
model is $DOLPHIN_BENCH_NODE_MODEL (smollm2 or tiny, default smollm2), prepared once under
.devdata/models as the demo does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio
import trio_asyncio

from cli.demo import prepare_model
from node.engines import ChatTurn, Engine, GenerationRequest
from node.engines.transformers import TransformersEngine
from node.inference import InferenceService
from node.ledger import PersistentReplayCache, open_ledger
from node.models import load_manifest
from p2p import DhtMode, HostConfig, Reachability, open_host
from pool import NodeContact
from protocols.ids import INFERENCE_PROTOCOL
from protocols.inference import ClientExchange
from protocols.keys import EncryptionKeyPair, Identity
from protocols.messages import ChatMessage, InferenceRequest, ResponseChunk

STREAMS = (1, 16)
ROUNDS = 3
TTFT_SAMPLES = 20
PROMPTS = (
    "Write a long story about a dolphin who learns to sing.",
    "Explain in detail how the tides work.",
    "Describe a walk through a busy market on a summer morning.",
    "What should a beginner know about sailing? Give many tips.",
)
MODELS_DIR = Path(".devdata/models")


@contextlib.asynccontextmanager
async def _transformers(model_dir: Path, max_batch: int) -> AsyncIterator[Engine]:
    engine = await trio.to_thread.run_sync(
        lambda: TransformersEngine.open(model_dir, max_batch=max_batch, threads=1, verify=False)
    )
    try:
        yield engine
    finally:
        await engine.aclose()


ENGINES: dict[str, Callable[[Path, int], contextlib.AbstractAsyncContextManager[Engine]]] = {
    "transformers": _transformers,
}


def _messages(index: int) -> tuple[ChatTurn, ...]:
    return (ChatTurn("user", PROMPTS[index % len(PROMPTS)]),)


async def _direct(engine: Engine, streams: int, max_tokens: int) -> tuple[int, float]:
    """(tokens, seconds) of `streams` concurrent answers asked of the engine itself."""
    tokens = 0

    async def one(index: int) -> None:
        nonlocal tokens
        request = GenerationRequest(messages=_messages(index), max_tokens=max_tokens)
        async for piece in engine.generate(request):
            tokens += len(piece.token_ids)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(streams):
            nursery.start_soon(one, index)
    return tokens, time.perf_counter() - started


async def _ask(client, contact: NodeContact, index: int, max_tokens: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """One answer over the network, receipt countersigned and acknowledged: (tokens, what the network
    added to its time to first token: the client's wait for it minus the node's own, from its receipt)."""
    request = InferenceRequest(
        request_id=os.urandom(16),
        model=contact.model,
        node_key=contact.node_key,
        messages=tuple(ChatMessage(role=m.role, content=m.content) for m in _messages(index)),
        max_tokens=max_tokens,
        temperature_milli=0,
    )
    started = time.perf_counter()
    exchange = ClientExchange(
        request, identity=Identity.generate(), node_encryption_key=contact.encryption_key
    )
    stream = await client.open_stream(contact.peer_id, INFERENCE_PROTOCOL)
    first = None
    await stream.write_message(exchange.sealed_request)
    while exchange.state != "done":
        message = exchange.receive(await stream.read_message(1 << 17, timeout=300))
        if first is None and isinstance(message, ResponseChunk) and message.token_ids:
            first = time.perf_counter() - started
    await stream.write_message(exchange.countersigned_receipt())
    exchange.receive_ack(await stream.read_message(1 << 10, timeout=30))
    await stream.close()
    node_first_token = exchange.receipt.message.first_token_ms / 1000
    return exchange.tokens_received, (first or 0.0) - node_first_token


async def _network(client, contact: NodeContact, streams: int, max_tokens: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    tokens = 0

    async def one(index: int) -> None:
        nonlocal tokens
        answered, _ = await _ask(client, contact, index, max_tokens)
        tokens += answered

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(streams):
            nursery.start_soon(one, index)
    return tokens, time.perf_counter() - started


async def _direct_ttft(engine: Engine) -> float:
    samples = []
    for index in range(TTFT_SAMPLES):
        started = time.perf_counter()
        async for piece in engine.generate(GenerationRequest(messages=_messages(index), max_tokens=1)):
            if piece.token_ids:
                samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def _network_added_ttft(client, contact: NodeContact) -> float:  # type: ignore[no-untyped-def]
    """Median time the network adds to the first token (paired per request, so the engine's own
    variation cancels out)."""
    return statistics.median([(await _ask(client, contact, i, 1))[1] for i in range(TTFT_SAMPLES)])


@contextlib.asynccontextmanager
async def _node(base: Path, engine: Engine, ledger, model: bytes, **host: object) -> AsyncIterator[tuple]:  # type: ignore[no-untyped-def]
    """A node host running the inference service on `engine`; yields (host, contact)."""
    keys = EncryptionKeyPair.generate()
    async with open_host(HostConfig(base, **host)) as node_host:  # type: ignore[arg-type]
        identity = Identity(node_host.signing_seed())
        service = InferenceService(
            identity=identity,
            encryption_keys=lambda: [keys],
            engine=engine,
            model_id=model,
            ledger=ledger,
            replay=PersistentReplayCache(ledger),
        )
        node_host.set_stream_handler(INFERENCE_PROTOCOL, service.handle)
        yield node_host, NodeContact(node_host.peer_id, identity.public_key, keys.public_key, model)


async def _bench_engine(name: str, model_dir: Path, max_tokens: int) -> dict:
    model = load_manifest(model_dir).model_id()
    results: dict = {"engine": name, "model": load_manifest(model_dir).name, "max_tokens": max_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        async with (
            ENGINES[name](model_dir, 16) as engine,
            trio_asyncio.open_loop(),
            open_ledger(base / "ledger") as ledger,
            open_host(
                HostConfig(base / "relay", relay_service=True, reachability=Reachability.PUBLIC)
            ) as relay,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(ledger.serve_nonce_writes)
            bootstrap = (relay.listen_addrs()[0],)
            client_config = HostConfig(base / "client", bootstrap=bootstrap, dht_mode=DhtMode.CLIENT)
            async with (
                _node(base / "direct", engine, ledger, model, bootstrap=bootstrap) as (direct_host, direct),
                _node(base / "hidden", engine, ledger, model, listen=(), bootstrap=bootstrap) as (
                    hidden_host,
                    hidden,
                ),
                open_host(client_config) as client,
            ):
                await client.connect(direct_host.listen_addrs()[0])
                await client.connect(hidden_host.circuit_addrs()[0])
                await _direct(engine, 2, 4)  # warm up both paths
                await _network(client, direct, 2, 4)
                for streams in STREAMS:
                    # Direct and network runs alternate, medians compared: the machine's other load
                    # drifts over minutes and would otherwise land on one side of the ratio.
                    direct_rates, network_rates = [], []
                    for _ in range(ROUNDS):
                        tokens, seconds = await _direct(engine, streams, max_tokens)
                        direct_rates.append(tokens / seconds)
                        tokens, seconds = await _network(client, direct, streams, max_tokens)
                        network_rates.append(tokens / seconds)
                    direct_tps, network_tps = (
                        statistics.median(direct_rates),
                        statistics.median(network_rates),
                    )
                    results[f"streams_{streams}"] = {
                        "direct_tokens_per_s": round(direct_tps, 1),
                        "network_tokens_per_s": round(network_tps, 1),
                        "network_over_direct": round(network_tps / direct_tps, 3),
                        "rounds": ROUNDS,
                    }
                ttft_direct = await _direct_ttft(engine)
                added = await _network_added_ttft(client, direct)
                added_relay = await _network_added_ttft(client, hidden)
                results["ttft_ms"] = {
                    "direct_engine": round(ttft_direct * 1000, 1),
                    "added_by_network": round(added * 1000, 1),
                    "added_through_relay": round(added_relay * 1000, 1),
                }
            batched_tokens, batched_seconds = await _direct(engine, 16, max_tokens)
            nursery.cancel_scope.cancel()
    async with ENGINES[name](model_dir, 1) as sequential:
        one_tokens, one_seconds = await _direct(sequential, 16, max_tokens)
    results["batching_16_streams"] = {
        "batched_tokens_per_s": round(batched_tokens / batched_seconds, 1),
        "one_at_a_time_tokens_per_s": round(one_tokens / one_seconds, 1),
        "speedup": round((batched_tokens / batched_seconds) / (one_tokens / one_seconds), 2),
    }
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for offset, engine in enumerate(engines):
        r = results[engine]
        labels = [f"{s} stream{'s' if s > 1 else ''}" for s in STREAMS]
        direct = [r[f"streams_{s}"]["direct_tokens_per_s"] for s in STREAMS]
        network = [r[f"streams_{s}"]["network_tokens_per_s"] for s in STREAMS]
        xs = [i + offset * 0.4 for i in range(len(STREAMS))]
        axes[0].bar([x - 0.1 for x in xs], direct, 0.2, label=f"{engine} direct")
        axes[0].bar([x + 0.1 for x in xs], network, 0.2, label=f"{engine} network")
        axes[0].set_xticks(range(len(STREAMS)), labels)
        ttft = r["ttft_ms"]
        axes[1].bar(
            [f"{engine}\nengine", f"{engine}\n+network", f"{engine}\n+relay"],
            [ttft["direct_engine"], ttft["added_by_network"], ttft["added_through_relay"]],
        )
        batching = r["batching_16_streams"]
        axes[2].bar(
            [f"{engine}\none at a time", f"{engine}\nbatched"],
            [batching["one_at_a_time_tokens_per_s"], batching["batched_tokens_per_s"]],
        )
    axes[0].set_title("tokens/s: engine directly vs through the network")
    axes[0].legend()
    axes[1].set_title("first token: the engine's, and what the network adds (ms)")
    axes[2].set_title("16 streams: batched vs one at a time (tokens/s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run(out_dir: Path) -> dict:
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # remote misbehaviour warnings, not results
    model = os.environ.get("DOLPHIN_BENCH_NODE_MODEL", "smollm2")
    names = [n for n in os.environ.get("DOLPHIN_BENCH_NODE_ENGINES", "transformers").split(",") if n]
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    model_dir = prepare_model(model, MODELS_DIR)
    max_tokens = 96 if model == "smollm2" else 256
    results = {name: trio.run(_bench_engine, name, model_dir, max_tokens) for name in names}
    plot = out_dir / "node.png"
    _plot(results, plot)
    return {"model": model, "engines": results, "plot": str(plot)}
