"""`serve_node(config)`: the node daemon operators run for weeks.

On start, in this order (each step logged, long ones reported through `progress`):
1. verify the model folder (and each of `extra_models`) against its manifest (a mismatch is refused,
   naming the file);
2. load the keys from the data dir: the libp2p peer key and the X25519 encryption keys (mode 0600,
   created once; the encryption key rotates on a timer);
3. load one engine per model (each its own vLLM server with engine vllm), and run each one's
   self-benchmark unless the cache holds one for that model, engine and hardware;
4. find the chain, if any (options, or the chain data dir as `dolphin chain` finds it): it verifies
   credit authorisations and clients' credit; without one every request is unpaid, and the node still
   serves. A stored operator binding (`dolphin node register`) goes into heartbeats; without it the node
   is announced as unregistered;
5. open the ledger, the libp2p host, the local API (the first model's); for each model publish the signed
   benchmark attestations, provide the pool record in the DHT and heartbeat its pool; serve
   INFERENCE_PROTOCOL, each request by the engine of the model it names, and each model's manifest and
   tokenizer files on TOKENIZER_PROTOCOL (clients without the model count bills with them); with a chain,
   hand paid receipts to the current validators' peers after each epoch and every
   `receipt_submit_seconds`;
6. write ready.json (peer id, addresses, `local_api`, `metrics` and `dashboard` URLs).

SIGINT/SIGTERM drains: new requests are refused (network and local), the next heartbeat says capacity 0,
answers in flight finish and their receipts go to the validators, for up to `drain_timeout` seconds, then
the daemon stops and removes ready.json.
A second signal stops it at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import trio
import trio_asyncio

from chain.errors import ChainError
from chain.locate import ChainLocation
from node.announce import Announcement, Announcer, detect_hardware, software_version
from node.benchmark import BenchmarkResult, BenchmarkSettings, attestations, cached_benchmark
from node.config import NodeConfig
from node.credits import CreditBook, PaymentPolicy
from node.engines.base import Engine
from node.engines.transformers import TransformersEngine
from node.engines.vllm_server import DEFAULT_VLLM_VENV, VllmSettings, open_vllm_engine
from node.errors import NodeError
from node.inference import InferenceService, ServiceLimits
from node.keys import KeyRing
from node.ledger import PersistentReplayCache, open_ledger
from node.local_api import build_app, serve_local_api
from node.metrics import NodeMetrics
from node.models.manifest import ModelManifest, verify_model_dir
from node.owner import ActivityMonitor, cpu_sampler, gpu_sampler
from node.registration import load_binding
from node.status import NodeStatus, StrikeWatch, chain_reader
from node.submission import ReceiptSubmitter
from node.tokenizer_files import TokenizerFileServer
from p2p import HostConfig, P2PError, attestation_topic, open_host
from p2p.daemon import check_data_dir_free, drain, ready_document, write_ready_file
from p2p.ports import check_http_address, check_listen_addrs
from pool.validator_peers import (
    ValidatorDirectory,
    fetch_rewards_tree,
    serve_validator_discovery,
    serve_validator_set,
)
from protocols.envelope import DEFAULT_MAX_SKEW_MS
from protocols.ids import INFERENCE_PROTOCOL, STRIKES_TOPIC, TOKENIZER_PROTOCOL, VALIDATORS_TOPIC
from protocols.keys import Identity
from protocols.messages import InferenceRequest, OperatorBinding

__all__ = ["Progress", "serve_node"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (step, done, total); total 0 when unknown
TREE_FETCH_SECONDS = 30.0  # the dashboard's claims: how long one try at the active rewards tree may take


def _no_progress(step: str, done: int, total: int) -> None:
    return None


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


@dataclass(frozen=True)
class _Served:
    """One model this node serves: its manifest, its engine and that engine's benchmark."""

    manifest: ModelManifest
    engine: Engine
    benchmark: BenchmarkResult

    @property
    def model_id(self) -> bytes:
        return self.manifest.model_id()


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
        ) as engine:
            yield engine
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


async def _open_chain(config: NodeConfig):  # type: ignore[no-untyped-def]
    """A read-only chain client, or None (no chain named, or unreachable: logged)."""
    location = ChainLocation(config.rpc_url, config.chain_dir, config.deployment)
    if not location.known():
        log.info("no chain configured: serving unpaid requests only, as an unregistered node")
        return None
    try:
        return await trio.to_thread.run_sync(location.client)
    except ChainError as exc:
        log.warning("the chain is unavailable (%s): serving as if there were none", exc)
        return None


async def _check_registration(chain, binding: OperatorBinding | None) -> None:  # type: ignore[no-untyped-def]
    if binding is None:
        log.warning(
            "this node is not registered (run `dolphin node register`): it is announced as unregistered"
        )
        return
    operator = "0x" + binding.operator.hex()
    if chain is None:
        log.info("announcing the operator binding of %s (not checked: no chain)", operator)
        return
    try:
        registered = await trio.to_thread.run_sync(
            chain.call, "Bonding", "isNodeOf", chain.w3.to_checksum_address(operator), binding.peer_id_hash
        )
    except ChainError as exc:
        log.warning("could not check the node's registration: %s", exc)
        return
    if registered:
        log.info("registered on chain to operator %s", operator)
    else:
        log.warning(
            "the stored binding to %s is not registered on this chain: run `dolphin node register`", operator
        )


def _payments(config: NodeConfig, chain) -> PaymentPolicy:  # type: ignore[no-untyped-def]
    if chain is None:
        return PaymentPolicy(serve_unpaid=config.serve_unpaid)

    def read_credit(wallet: bytes) -> int:
        return chain.credits.spendable_of(chain.w3.to_checksum_address("0x" + wallet.hex()))

    def read_price(model: bytes) -> int:
        return chain.credits.price_of(model)

    book = CreditBook(read_credit, read_price=read_price, refresh_s=config.credit_refresh_seconds)
    return PaymentPolicy(credit_domain=chain.domain("Credits"), book=book, serve_unpaid=config.serve_unpaid)


async def _serve_attestations(host, envelopes: list[bytes], model: bytes, interval: float) -> None:  # type: ignore[no-untyped-def]
    """Publish the benchmark attestations now and every `interval` seconds (late joiners see them too)."""
    topic = attestation_topic(model)
    while True:
        for data in envelopes:
            try:
                await host.gossip.publish(topic, data)
            except P2PError as exc:
                log.warning("could not publish a benchmark attestation (retrying later): %s", exc)
        await trio.sleep(interval)


async def _serve_key_rotation(keys: KeyRing, announcers: list[Announcer]) -> None:
    while True:
        await trio.sleep(max(keys.due_in(), 1.0))
        if keys.rotate_if_due():
            log.info(
                "rotated the encryption key; the previous one is accepted for %d s more",
                keys.grace_ms // 1000,
            )
            _publish_soon(announcers)


def _publish_soon(announcers: list[Announcer]) -> None:
    for announcer in announcers:
        announcer.publish_soon()


async def serve_node(
    config: NodeConfig,
    *,
    progress: Progress = _no_progress,
    task_status: trio.TaskStatus[dict] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node until SIGINT/SIGTERM (see the module docstring); started with the ready.json document.

    Raises NodeError (bad model folder, damaged key or binding file) and P2PError (cannot listen) at
    start; once serving, nothing a peer or client does ends it.
    """
    if config.model is None:
        raise NodeError("no model to serve: pass --model DIR (a folder made by `dolphin model`)")
    # Addresses and ports first: a typo or a busy port must not cost a model load and a benchmark.
    host_config = HostConfig(
        config.data_dir, listen=config.listen, announce=config.announce, bootstrap=config.bootstrap
    )
    check_listen_addrs(config.listen)
    check_http_address(config.local_api, "--local-api")
    check_data_dir_free(config.data_dir)
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    started_at_ms = time.time_ns() // 1_000_000

    manifests = [await _verify_model(folder, progress) for folder in _model_dirs(config)]
    model_ids = [manifest.model_id() for manifest in manifests]
    if len(set(model_ids)) < len(model_ids):
        raise NodeError("the same model is named twice (--model and --extra-model): serve each once")
    if len(manifests) > 1 and config.engine_url is not None:
        raise NodeError("engine_url attaches to one vLLM server, for one model: drop extra_models")
    for manifest, folder in zip(manifests, _model_dirs(config), strict=True):
        log.info("serving %s (model id %s) from %s", manifest.name, manifest.model_id().hex(), folder)
    grace_s = (InferenceRequest.MAX_TTL_MS + DEFAULT_MAX_SKEW_MS) / 1000
    keys = KeyRing.open(data_dir, rotation_s=config.key_rotation_hours * 3600, grace_s=grace_s)
    binding = load_binding(data_dir)

    hardware = detect_hardware()
    settings = BenchmarkSettings(
        config.benchmark_prompt_tokens, config.benchmark_output_tokens, config.benchmark_streams
    )
    served: list[_Served] = []
    async with contextlib.AsyncExitStack() as engines:
        for index, (manifest, folder) in enumerate(zip(manifests, _model_dirs(config), strict=True)):
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
            served.append(_Served(manifest, engine, benchmark))
        chain = await _open_chain(config)
        await _check_registration(chain, binding)
        progress("starting the network", 0, 0)
        await _serve(config, host_config, served, keys, binding, chain, hardware, started_at_ms, task_status)


async def _serve(  # type: ignore[no-untyped-def]
    config: NodeConfig,
    host_config: HostConfig,
    served: list[_Served],
    keys: KeyRing,
    binding: OperatorBinding | None,
    chain,
    hardware,
    started_at_ms: int,
    task_status,
) -> None:
    first = served[0]
    engine, manifest, model_id = first.engine, first.manifest, first.model_id
    payments = _payments(config, chain)
    metrics = NodeMetrics(engine.load)
    draining = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            trio_asyncio.open_loop(),
            open_ledger(config.data_dir, epoch_ms=config.epoch_seconds * 1000) as ledger,
            open_host(host_config) as host,
            trio.open_nursery() as nursery,
        ):
            replay = PersistentReplayCache(ledger)
            remembered = await replay.load()
            identity = Identity(host.signing_seed())
            service = InferenceService(
                identity=identity,
                encryption_keys=keys.accepted,
                engine=engine,
                model_id=model_id,
                more_engines={model.model_id: model.engine for model in served[1:]},
                limits=ServiceLimits(
                    max_new_tokens=config.max_new_tokens,
                    max_waiting=config.max_waiting,
                    flush_interval=config.flush_interval_ms / 1000,
                ),
                ledger=ledger,
                replay=replay,
                payments=payments,
                metrics=metrics,
            )

            def announcer_of(model: _Served) -> Announcer:
                def announcement() -> Announcement:
                    return Announcement(
                        binding=binding,
                        encryption_key=keys.current.public_key,
                        model=model.model_id,
                        capacity=model.engine.load().capacity if service.accepting else 0,
                        hardware=hardware,
                        software_version=software_version(),
                        started_at_ms=started_at_ms,
                        model_name=model.manifest.name,
                    )

                load = functools.partial(service.load_of, model.model_id)
                return Announcer(host, identity, announcement, load, interval=config.heartbeat_interval)

            announcers = [announcer_of(model) for model in served]
            status = _node_status(host, identity, served, metrics, ledger, binding, chain, lambda: draining)
            app = build_app(
                engine,
                model_name=manifest.name,
                model_id=model_id,
                metrics=metrics,
                max_new_tokens=config.max_new_tokens,
                refusing=lambda: "the node is shutting down" if draining else None,
                status=status.snapshot,
            )
            nursery.start_soon(ledger.serve_nonce_writes)
            await nursery.start(status.serve)
            if status.strike_watch is not None:
                await _watch_strikes(host, status.strike_watch, nursery)
            local_url = await nursery.start(serve_local_api, app, config.local_api)
            host.set_stream_handler(INFERENCE_PROTOCOL, service.handle)
            folders = zip((model.manifest for model in served), _model_dirs(config), strict=True)
            host.set_stream_handler(TOKENIZER_PROTOCOL, TokenizerFileServer(folders).handle)
            for model, announcer in zip(served, announcers, strict=True):
                await nursery.start(announcer.serve)
                envelopes = attestations(
                    model.benchmark, identity, model=model.model_id, engine=model.engine, hardware=hardware
                )
                nursery.start_soon(
                    _serve_attestations, host, envelopes, model.model_id, config.attestation_interval
                )
            nursery.start_soon(_serve_key_rotation, keys, announcers)
            if payments.book is not None:
                nursery.start_soon(payments.book.serve_refreshes)
            submitter = await _start_submissions(config, chain, host, ledger, nursery)
            if config.yield_when_busy:
                nursery.start_soon(_serve_owner_watch, config, service, announcers)
            metrics.accepting.set(1)
            document = ready_document(
                host,
                {
                    "local_api": local_url,
                    "metrics": f"{local_url}/metrics",
                    "dashboard": f"{local_url}/dashboard",
                    "model": model_id.hex(),
                    "model_name": manifest.name,
                    "engine": engine.name,
                    "models": [
                        {"model": model.model_id.hex(), "model_name": model.manifest.name} for model in served
                    ],
                    "registered": binding is not None,
                    "operator": "0x" + binding.operator.hex() if binding is not None else None,
                    "chain": chain.rpc_url if chain is not None else None,
                },
            )
            ready = write_ready_file(config.data_dir, document)
            log.info(
                "node %s ready: %s; local API %s (%d replay nonces restored)",
                host.peer_id,
                ", ".join(host.advertised_addrs()) or "no address yet",
                local_url,
                remembered,
            )
            task_status.started(document)
            try:
                async for _ in signals:
                    break
                log.info("draining: refusing new requests, %d in flight", service.active)
                draining = True
                service.pause("draining", "this node is shutting down; ask another")
                _publish_soon(announcers)

                async def finish() -> None:
                    await service.wait_idle()
                    for announcer in announcers:  # the last heartbeats, capacity 0
                        await announcer.publish()
                    if submitter is not None:  # the receipts of answers finished while draining
                        await submitter.submit_all()

                if not await drain(signals, finish, config.drain_timeout) and service.active:
                    log.warning(
                        "stopping with %d answers unfinished after %g s", service.active, config.drain_timeout
                    )
            finally:
                ready.unlink(missing_ok=True)
                nursery.cancel_scope.cancel()
    log.info("stopped")


def _node_status(host, identity, served, metrics, ledger, binding, chain, draining) -> NodeStatus:  # type: ignore[no-untyped-def]
    """The status model behind /status and the dashboard (node.status): every model served, the first
    model's engine and chain facts (the local API's)."""
    model_id = served[0].model_id

    def host_facts() -> dict:
        return {
            "reachable": host.reachable,
            "listen_addrs": host.listen_addrs(),
            "circuit_addrs": host.circuit_addrs(),
            "advertised_addrs": host.advertised_addrs(),
            "dht_mode": str(host.dht.mode),
        }

    status = NodeStatus(
        peer_id=host.peer_id,
        node_key=identity.public_key,
        models=[{"name": model.manifest.name, "id": model.model_id.hex()} for model in served],
        engine=served[0].engine,
        metrics=metrics,
        ledger=ledger,
        host_facts=host_facts,
        operator="0x" + binding.operator.hex() if binding is not None else None,
        chain_url=chain.rpc_url if chain is not None else None,
        read_chain=chain_reader(chain, binding, model_id) if chain is not None else None,
        fetch_tree=functools.partial(fetch_rewards_tree, host, timeout=TREE_FETCH_SECONDS),
        draining=draining,
    )
    if chain is not None:
        status.strike_watch = StrikeWatch(identity.public_key, chain.domain("Slashing"), status.is_validator)
    return status


async def _watch_strikes(host, watch: StrikeWatch, nursery: trio.Nursery) -> None:  # type: ignore[no-untyped-def]
    """Follow STRIKES_TOPIC through `watch` (which keeps the strikes against us); the subscription's own
    queue is read and dropped so it never fills."""
    subscription = await host.gossip.subscribe(STRIKES_TOPIC, watch.validate)

    async def drain_queue() -> None:
        async for _ in subscription:
            pass

    nursery.start_soon(drain_queue)


async def _start_submissions(config: NodeConfig, chain, host, ledger, nursery) -> ReceiptSubmitter | None:  # type: ignore[no-untyped-def]
    """Hand paid receipts to the current validators' peers (node.submission); only with a chain, which
    says who the validators are."""
    if chain is None:
        return None
    directory = ValidatorDirectory(chain.domain("ValidatorQuorum"), frozenset())

    def read_members() -> frozenset[bytes] | None:
        try:
            return frozenset(bytes.fromhex(m[2:]) for m in chain.validator_set().members)
        except ChainError as exc:
            log.warning("could not read the validator set (keeping the last one): %s", exc)
            return None

    await nursery.start(serve_validator_set, read_members, directory)
    await host.gossip.subscribe(VALIDATORS_TOPIC, directory.validate)
    await nursery.start(
        functools.partial(serve_validator_discovery, host, interval=config.receipt_submit_seconds)
    )
    submitter = ReceiptSubmitter(
        host, ledger, directory, interval=config.receipt_submit_seconds, epoch_ms=config.epoch_seconds * 1000
    )
    await nursery.start(submitter.serve)
    return submitter


async def _serve_owner_watch(
    config: NodeConfig, service: InferenceService, announcers: list[Announcer]
) -> None:
    sampler = gpu_sampler() or cpu_sampler()
    monitor = ActivityMonitor(
        sampler,
        busy_above=config.busy_above,
        idle_below=config.idle_below,
        interval=config.busy_check_interval,
    )

    def on_change(busy: bool) -> None:
        if busy:
            service.pause("owner_busy", "this machine's owner is using it; ask another node")
        else:
            service.resume("owner_busy")
        _publish_soon(announcers)

    await monitor.serve(on_change)
