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

import functools
import logging
import time
from dataclasses import asdict, dataclass

import trio

from chain.client import ChainClient
from chain.errors import ChainError
from chain.locate import ChainLocation
from node.announce import Announcement, Announcer, HeartbeatServer, detect_hardware, software_version
from node.config import NodeConfig
from node.credits import CreditBook, PaymentPolicy
from node.errors import NodeError
from node.inference import InferenceService, ServiceLimits
from node.keys import KeyRing
from node.ledger import Ledger, PersistentReplayCache, open_ledger
from node.local_api import build_app, serve_local_api
from node.metrics import NodeMetrics
from node.owner import ActivityMonitor, cpu_sampler, gpu_sampler
from node.registration import load_binding
from node.slots import ModelSlot, Progress, open_model_slots, verify_models
from node.status import NodeStatus, StrikeWatch, chain_reader
from node.submission import ReceiptSubmitter
from node.tokenizer_files import TokenizerFileServer
from p2p import HostConfig, open_host
from p2p.daemon import ready_document
from p2p.ports import check_http_address, check_listen_addrs
from pool.validator_peers import (
    ValidatorDirectory,
    fetch_rewards_tree,
    serve_validator_discovery,
    serve_validator_set,
)
from protocols.envelope import DEFAULT_MAX_SKEW_MS
from protocols.ids import (
    HEARTBEAT_PROTOCOL,
    INFERENCE_PROTOCOL,
    STRIKES_TOPIC,
    TOKENIZER_PROTOCOL,
    VALIDATORS_TOPIC,
)
from protocols.keys import Identity
from protocols.messages import InferenceRequest, OperatorBinding
from runtime.lifecycle import Drain, claim_data_dir, open_daemon

__all__ = ["Progress", "serve_node"]

log = logging.getLogger(__name__)

TREE_FETCH_SECONDS = 30.0  # the dashboard's claims: how long one try at the active rewards tree may take


def _no_progress(step: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class _Node:
    """What this node is before it joins the network: its model slots, keys, operator binding and chain."""

    slots: list[ModelSlot]
    keys: KeyRing
    binding: OperatorBinding | None
    chain: ChainClient | None  # read-only
    started_at_ms: int

    @property
    def first(self) -> ModelSlot:
        """The model whose engine the local API and the status page serve."""
        return self.slots[0]


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
        config.data_dir,
        listen=config.listen,
        announce=config.announce,
        bootstrap=config.bootstrap,
        hole_punch_private_addrs=config.hole_punch_private_addrs,
    )
    check_listen_addrs(config.listen)
    check_http_address(config.local_api, "--local-api")
    claim_data_dir(config.data_dir)
    started_at_ms = time.time_ns() // 1_000_000
    models = await verify_models(config, progress)
    grace_s = (InferenceRequest.MAX_TTL_MS + DEFAULT_MAX_SKEW_MS) / 1000
    keys = KeyRing.open(config.data_dir, rotation_s=config.key_rotation_hours * 3600, grace_s=grace_s)
    binding = load_binding(config.data_dir)
    async with open_model_slots(config, models, detect_hardware(), progress) as slots:
        chain = await _open_chain(config)
        await _check_registration(chain, binding)
        progress("starting the network", 0, 0)
        await _serve(config, host_config, _Node(slots, keys, binding, chain, started_at_ms), task_status)


async def _serve(
    config: NodeConfig, host_config: HostConfig, node: _Node, task_status: trio.TaskStatus[dict]
) -> None:
    payments = _payments(config, node.chain)
    metrics = NodeMetrics(node.first.engine.load)
    async with (
        open_daemon(config.data_dir) as daemon,
        open_ledger(config.data_dir, epoch_ms=config.epoch_seconds * 1000) as ledger,
        open_host(host_config) as host,
        trio.open_nursery() as nursery,
    ):
        replay = PersistentReplayCache(ledger)
        remembered = await replay.load()
        identity = Identity(host.signing_seed())
        service = _inference_service(config, node, identity, ledger, replay, payments, metrics)
        status = _node_status(host, identity, node, metrics, ledger, lambda: daemon.draining)
        app = build_app(
            node.first.engine,
            model_name=node.first.manifest.name,
            model_id=node.first.model_id,
            metrics=metrics,
            max_new_tokens=config.max_new_tokens,
            refusing=lambda: "the node is shutting down" if daemon.draining else None,
            status=status.snapshot,
        )
        nursery.start_soon(ledger.serve_nonce_writes)
        await nursery.start(status.serve)
        if status.strike_watch is not None:
            await _watch_strikes(host, status.strike_watch, nursery)
        local_url = await nursery.start(serve_local_api, app, config.local_api)
        host.set_stream_handler(INFERENCE_PROTOCOL, service.handle)
        folders = [(slot.manifest, slot.folder) for slot in node.slots]
        host.set_stream_handler(TOKENIZER_PROTOCOL, TokenizerFileServer(folders).handle)
        announcement = functools.partial(_announcement, node, service)
        announcers = [
            await slot.start(nursery, host, identity, service, announcement, config) for slot in node.slots
        ]
        host.set_stream_handler(HEARTBEAT_PROTOCOL, HeartbeatServer(announcers).handle)
        nursery.start_soon(_serve_key_rotation, node.keys, announcers)
        if payments.book is not None:
            nursery.start_soon(payments.book.serve_refreshes)
        submitter = await _start_submissions(config, node.chain, host, ledger, nursery)
        if config.yield_when_busy:
            nursery.start_soon(_serve_owner_watch, config, service, announcers)
        metrics.accepting.set(1)
        document = _ready_document(host, local_url, node)
        log.info(
            "node %s ready: %s; local API %s (%d replay nonces restored)",
            host.peer_id,
            ", ".join(host.advertised_addrs()) or "no address yet",
            local_url,
            remembered,
        )
        await daemon.serve(nursery, document, _drain(config, service, announcers, submitter), task_status)
    log.info("stopped")


def _inference_service(
    config: NodeConfig, node: _Node, identity: Identity, ledger: Ledger, replay, payments, metrics
) -> InferenceService:
    """The INFERENCE_PROTOCOL handler: each request answered by the engine of the model it names."""
    return InferenceService(
        identity=identity,
        encryption_keys=node.keys.accepted,
        engine=node.first.engine,
        model_id=node.first.model_id,
        more_engines={slot.model_id: slot.engine for slot in node.slots[1:]},
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


def _announcement(node: _Node, service: InferenceService, slot: ModelSlot) -> Announcement:
    """What `slot`'s heartbeats say now: capacity 0 while the service refuses (draining, owner busy)."""
    return Announcement(
        binding=node.binding,
        encryption_key=node.keys.current.public_key,
        model=slot.model_id,
        capacity=slot.engine.load().capacity if service.accepting else 0,
        hardware=slot.hardware,
        software_version=software_version(),
        started_at_ms=node.started_at_ms,
        model_name=slot.manifest.name,
    )


def _ready_document(host, local_url: str, node: _Node) -> dict:
    first, binding, chain = node.first, node.binding, node.chain
    return ready_document(
        host,
        {
            "local_api": local_url,
            "metrics": f"{local_url}/metrics",
            "dashboard": f"{local_url}/dashboard",
            "model": first.model_id.hex(),
            "model_name": first.manifest.name,
            "engine": first.engine.name,
            "models": [
                {"model": slot.model_id.hex(), "model_name": slot.manifest.name} for slot in node.slots
            ],
            "registered": binding is not None,
            "operator": "0x" + binding.operator.hex() if binding is not None else None,
            "chain": chain.rpc_url if chain is not None else None,
        },
    )


def _drain(
    config: NodeConfig,
    service: InferenceService,
    announcers: list[Announcer],
    submitter: ReceiptSubmitter | None,
) -> Drain:
    """Refuse new requests (network and local), say capacity 0, finish the answers in flight and hand
    their receipts to the validators."""

    def begin() -> None:
        log.info("draining: refusing new requests, %d in flight", service.active)
        service.pause("draining", "this node is shutting down; ask another")
        _publish_soon(announcers)

    async def finish() -> None:
        await service.wait_idle()
        for announcer in announcers:  # the last heartbeats, capacity 0
            await announcer.publish()
        if submitter is not None:  # the receipts of answers finished while draining
            await submitter.submit_all()

    def unfinished() -> None:
        if service.active:
            log.warning(
                "stopping with %d answers unfinished after %g s", service.active, config.drain_timeout
            )

    return Drain(begin, finish, unfinished, config.drain_timeout)


async def _open_chain(config: NodeConfig):
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


async def _check_registration(chain, binding: OperatorBinding | None) -> None:
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
            chain.bonding.is_node_of, chain.w3.to_checksum_address(operator), binding.peer_id_hash
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


def _payments(config: NodeConfig, chain) -> PaymentPolicy:
    if chain is None:
        return PaymentPolicy(serve_unpaid=config.serve_unpaid)

    def read_credit(wallet: bytes) -> int:
        return chain.credits.spendable_of(chain.w3.to_checksum_address("0x" + wallet.hex()))

    def read_price(model: bytes) -> int:
        return chain.credits.price_of(model)

    book = CreditBook(read_credit, read_price=read_price, refresh_s=config.credit_refresh_seconds)
    return PaymentPolicy(credit_domain=chain.domain("Credits"), book=book, serve_unpaid=config.serve_unpaid)


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


def _node_status(host, identity, node: _Node, metrics, ledger, draining) -> NodeStatus:
    """The status model behind /status and the dashboard (node.status): every model served, the first
    model's engine and chain facts (the local API's)."""
    model_id, binding, chain = node.first.model_id, node.binding, node.chain

    def host_facts() -> dict:
        return {
            "reachable": host.reachable,
            "listen_addrs": host.listen_addrs(),
            "circuit_addrs": host.circuit_addrs(),
            "advertised_addrs": host.advertised_addrs(),
            "dht_mode": str(host.dht.mode),
            "hole_punches": asdict(host.hole_punches),
        }

    status = NodeStatus(
        peer_id=host.peer_id,
        node_key=identity.public_key,
        models=[{"name": slot.manifest.name, "id": slot.model_id.hex()} for slot in node.slots],
        engine=node.first.engine,
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


async def _watch_strikes(host, watch: StrikeWatch, nursery: trio.Nursery) -> None:
    """Follow STRIKES_TOPIC through `watch` (which keeps the strikes against us); the subscription's own
    queue is read and dropped so it never fills."""
    subscription = await host.gossip.subscribe(STRIKES_TOPIC, watch.validate)

    async def drain_queue() -> None:
        async for _ in subscription:
            pass

    nursery.start_soon(drain_queue)


async def _start_submissions(config: NodeConfig, chain, host, ledger, nursery) -> ReceiptSubmitter | None:
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
