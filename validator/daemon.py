"""`serve_validator(config)`: the validator daemon validators run for weeks.

On start, in this order (each step logged):
1. load the wallet key (`<data dir>/validator.key` unless `key_file` names one) and the reference model,
   verified against its manifest (its hash is the pool's model id);
2. find the chain, if any: the validator set (whose strikes count, and how much each weighs), the
   domains messages are signed under, slashing, and credit for challenges; without one, the set is the
   configured `validators` plus this one, and nothing is slashed;
3. open the state (`validator.sqlite`) and restore suspicions, strikes, bans and decisions from it;
4. start the libp2p host and subscribe to the model's pool heartbeats and benchmark attestations, and to
   strikes, bans, decisions and users' reports (each through its topic validator); dial the pool's
   members from its DHT records, as clients do, so that no node has to dial a validator to be sampled;
5. serve /metrics, /health, /status and the dashboard (/dashboard), write ready.json, and run: sampling
   (each pool member challenged at the rate its suspicion sets, a few at a time, from throwaway
   light-client hosts), with a chain the checks of the real answers clients share over AUDIT_PROTOCOL
   (`pool.audits`), re-verification of others' strikes, standings on STANDING_TOPIC, decisions and
   slashing, validator-set refreshes, and the reference model's tokenizer files on TOKENIZER_PROTOCOL
   (for clients whose pool withholds them, `pool.tokenizers`);
6. with a chain, the money loop (validator.epochs): nodes' receipts taken into `evidence.sqlite`, each
   epoch settled on the validators' schedule (the rewards root, the election of the next set and the
   credit debits, signed by a quorum over gossip and relayed by whichever validator is first; rewards
   trees in `<data dir>/rewards/`), and, when this wallet holds the keeper role, the buyback keeper.

SIGINT/SIGTERM drains: no new challenges; those in flight finish for up to `drain_timeout` seconds; then
the daemon stops and removes ready.json. A second signal stops it at once. Nothing a peer sends ends it:
a message that fails is logged and dropped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from chain.client import ChainClient, read_key_file
from chain.errors import ChainError
from chain.locate import ChainLocation
from chain.quorum import QuorumRule
from node.models import load_manifest
from node.tokenizer_files import TokenizerFileServer
from p2p import HostConfig, P2PError, open_host
from p2p.daemon import ready_document
from p2p.ports import check_http_address, check_listen_addrs
from pool import Member, PoolView, sign_announcement
from pool.attestations import attestation_validator
from pool.bans import BanRules
from pool.light import CreditWallet
from pool.watch import MemberDialer, WatchSettings
from protocols import envelope
from protocols.eth import EthAccount, TypedDomain
from protocols.ids import AUDIT_PROTOCOL, STRIKES_TOPIC, TOKENIZER_PROTOCOL, attestation_topic, pool_topic
from protocols.keys import Identity, peer_id_from_text
from protocols.messages import BenchmarkAttestation, StrikeReport
from runtime.files import write_atomically
from runtime.http import serve_http
from runtime.lifecycle import Daemon, Drain, InFlight, claim_data_dir, open_daemon
from validator.calibration import thresholds_for
from validator.chain import SlashingChain
from validator.challenge_wallets import open_challenge_wallets, track_challenge_credit
from validator.challenges import draw_challenge, load_prompts
from validator.closing import find_closing_block
from validator.config import ValidatorConfig
from validator.epochs import SettlementConfig, serve_settlement
from validator.errors import ReferenceModelError, ValidatorConfigError, ValidatorError
from validator.evidence import open_evidence_store
from validator.keeper import KeeperConfig, serve_buyback_keeper
from validator.metrics import ValidatorMetrics, build_app
from validator.prompts import GENERATED, Chat
from validator.reference import Reference, open_reference
from validator.sampler import ChallengeFailed, ChallengeSender
from validator.service import Validator, decision_settle_s
from validator.state import open_state
from validator.status import ValidatorStatus
from validator.strikes import StrikePolicy
from validator.suspicion import SuspicionModel

__all__ = ["load_wallet", "serve_validator", "write_wallet"]

log = logging.getLogger(__name__)

# Without a chain, messages are signed under this domain (chain id 31337, no contract): peers of one test
# network or one operator's fleet agree on it; with a chain, the deployment's Slashing domain is used.
NO_CHAIN_DOMAIN = TypedDomain("Dolphin Network", "1", 31337, b"\0" * 20)
DECISION_INTERVAL_S = 5.0


def write_wallet(path: Path) -> str:
    """Create a wallet key file (mode 0600) at `path` unless one exists; returns its address."""
    if not path.exists():
        write_atomically(path, ("0x" + os.urandom(32).hex() + "\n").encode(), mode=0o600)
    return load_wallet(path).address.hex()


def load_wallet(path: Path) -> EthAccount:
    """The validator wallet in `path` (a hex private key); ValidatorError naming the file if unusable."""
    try:
        return EthAccount(bytes.fromhex(read_key_file(path).removeprefix("0x")))
    except ChainError as exc:
        raise ValidatorError(f"{exc}: run `dolphin validator init` to create one") from exc


@dataclass
class _Pool:
    """What the validator knows about its pool: members (heartbeats) and their latest attestations."""

    view: PoolView
    attestations: dict[bytes, bytes] = field(default_factory=dict)  # node key -> N-stream attestation

    def record_attestation(self, signed: envelope.Signed[BenchmarkAttestation]) -> None:
        attestation = signed.message
        known = self.attestations.get(attestation.node_key)
        if known is not None:
            previous = envelope.open_signed(known, BenchmarkAttestation, check_time=False).message
            if (previous.concurrency, previous.measured_at_ms) > (
                attestation.concurrency,
                attestation.measured_at_ms,
            ):
                return
        self.attestations[attestation.node_key] = signed.raw


async def _open_chain(config: ValidatorConfig, wallet_key: str) -> SlashingChain | None:
    location = ChainLocation(config.rpc_url, config.chain_dir, config.deployment)
    if not location.known():
        log.info("no chain configured: the validator set is the configured one, and nothing is slashed")
        return None
    try:
        client: ChainClient = await trio.to_thread.run_sync(location.client, wallet_key)
    except ChainError as exc:
        log.warning("the chain is unavailable (%s): running as if there were none", exc)
        return None
    return SlashingChain(client)


def _static_set(config: ValidatorConfig, wallet: EthAccount) -> QuorumRule:
    addresses = {wallet.address}
    for text in config.validators:
        try:
            addresses.add(bytes.fromhex(text.removeprefix("0x")))
        except ValueError:
            raise ValidatorConfigError(f"validators: {text!r} is not an address") from None
        if len(bytes.fromhex(text.removeprefix("0x"))) != 20:
            raise ValidatorConfigError(f"validators: {text!r} is not a 20-byte address")
    return QuorumRule.equal_weights(sorted(addresses))


async def serve_validator(
    config: ValidatorConfig,
    *,
    task_status: trio.TaskStatus[dict] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the validator until SIGINT/SIGTERM (see the module docstring); started with the ready.json
    document. Raises ValidatorError (no reference, bad key) and P2PError (cannot listen) at start."""
    if config.reference is None:
        raise ValidatorConfigError(
            "no reference model: pass --reference DIR (the model this validator checks)"
        )
    # Addresses and ports first: a typo or a busy port must not cost a reference model load.
    HostConfig(config.data_dir, listen=config.listen, bootstrap=config.bootstrap)
    check_listen_addrs(config.listen)
    check_http_address(config.metrics, "--metrics")
    claim_data_dir(config.data_dir)
    wallet = load_wallet(config.wallet_key_file)
    key_hex = read_key_file(config.wallet_key_file)
    log.info("validator wallet 0x%s", wallet.address.hex())
    reference = await open_reference(config.reference, threads=config.threads or None)
    try:
        log.info("reference model %s (model id %s)", reference.name, reference.model_id.hex())
        chain = await _open_chain(config, key_hex)
        await _serve(config, wallet, reference, chain, task_status)
    finally:
        with trio.CancelScope(shield=True):
            await reference.engine.aclose()


async def _serve(
    config: ValidatorConfig,
    wallet: EthAccount,
    reference: Reference,
    chain: SlashingChain | None,
    task_status: trio.TaskStatus[dict],
) -> None:
    metrics = ValidatorMetrics()
    network = await _network(config, chain, wallet)
    metrics.validator_set.set(len(network.validators.weights))
    if not network.validators.is_validator(wallet.address):
        log.warning(
            "0x%s is not in the current validator set: checking nodes, but striking nobody",
            wallet.address.hex(),
        )
    host_config = HostConfig(config.data_dir, listen=config.listen, bootstrap=config.bootstrap)
    sampling = _Sampling(config, metrics, network.challenge_wallets)
    async with (
        open_daemon(config.data_dir) as daemon,
        open_state(config.data_dir) as state,
        open_host(host_config) as host,
        contextlib.AsyncExitStack() as stack,
        trio.open_nursery() as nursery,
    ):
        validator = await _open_validator(config, host, state, wallet, reference, network, chain, metrics)
        if reference.folder is not None:  # clients count bills with its tokenizer, which members may withhold
            files = TokenizerFileServer([(load_manifest(reference.folder), reference.folder)])
            host.set_stream_handler(TOKENIZER_PROTOCOL, files.handle)
        pool = await _follow_pool(host, nursery, validator, network.binding_domain, metrics)
        await sampling.start(nursery, validator, pool)
        nursery.start_soon(_serve_standings, validator, config.standing_interval, metrics)
        nursery.start_soon(_serve_decisions, validator)
        money = await _start_money_loop(config, host, chain, validator, network, metrics, stack, nursery)
        health = _health(daemon, pool, sampling, wallet)
        status = ValidatorStatus(
            peer_id=host.peer_id,
            validator=validator,
            state=state,
            metrics=metrics,
            health=health,
            model={"name": reference.name, "id": reference.model_id.hex()},
            chain_url=chain.client.rpc_url if chain is not None else None,
        )
        if money is not None:
            status.chain, status.evidence, status.settlement, status.keeper = money
        await nursery.start(status.serve)
        app = build_app(metrics, health, status.snapshot)
        # The logger name its HTTP server has always logged under (it used the node's local API server).
        metrics_url = await nursery.start(
            functools.partial(serve_http, log_name="node.local_api.http"), app, config.metrics
        )
        document = _ready_document(host, metrics_url, wallet, network.validators, reference, chain)
        log.info(
            "validator %s ready: %s; metrics %s",
            host.peer_id,
            ", ".join(host.advertised_addrs()),
            metrics_url,
        )
        await daemon.serve(nursery, document, sampling.drain(config.drain_timeout), task_status)
    log.info("stopped")


@dataclass(frozen=True)
class _Network:
    """Who the validators are and the domains messages are signed under: the chain's, or without one the
    configured set and NO_CHAIN_DOMAIN; `challenge_wallets` pay for challenges (with a chain only)."""

    validators: QuorumRule
    policy: StrikePolicy
    domain: TypedDomain
    binding_domain: TypedDomain
    challenge_wallets: list[CreditWallet]


async def _network(config: ValidatorConfig, chain: SlashingChain | None, wallet: EthAccount) -> _Network:
    policy = StrikePolicy(
        exclude_points=config.exclude_points,
        ban_points=config.ban_points,
        ban_validators=config.ban_validators,
        exclusion_epochs=config.exclusion_epochs,
        window_epochs=config.strike_window_epochs,
    )
    if chain is None:
        return _Network(_static_set(config, wallet), policy, NO_CHAIN_DOMAIN, NO_CHAIN_DOMAIN, [])
    validators = await trio.to_thread.run_sync(chain.quorum_rule)
    rules = BanRules.from_chain(await trio.to_thread.run_sync(chain.strike_rules))
    return _Network(
        validators,
        policy.with_rules(rules),  # the network's ban rules, not this validator's config
        chain.domain(),
        chain.domain("Bonding"),
        open_challenge_wallets(
            config.challenge_wallet_file, config.challenge_wallets, chain.domain("Credits")
        ),
    )


async def _open_validator(
    config: ValidatorConfig,
    host,
    state,
    wallet: EthAccount,
    reference: Reference,
    network: _Network,
    chain: SlashingChain | None,
    metrics: ValidatorMetrics,
) -> Validator:
    """The checks and their bookkeeping, restored from the state."""

    async def publish(topic: str, data: bytes) -> None:
        try:
            await host.gossip.publish(topic, data)
        except P2PError as exc:
            log.warning("could not publish on %s: %s", topic, exc)

    validator = Validator(
        peer=Identity(host.signing_seed()),
        wallet=wallet,
        domain=network.domain,
        reference=reference,
        thresholds=thresholds_for(reference.name, config.threshold_overrides()),
        state=state,
        publish=publish,
        validators=network.validators,
        policy=network.policy,
        suspicion=SuspicionModel(
            prior=config.prior,
            detection=config.detection,
            false_positive=config.false_positive,
            report_factor=config.report_factor,
            base_per_hour=config.base_per_hour,
            max_per_hour=config.max_per_hour,
        ),
        chain=chain,
        epoch_seconds=config.epoch_seconds,
        decision_settle_s=decision_settle_s(config.standing_interval),  # it republishes at that interval
        on_slash=metrics.slashes.inc,
        on_ban_refused=metrics.bans_refused.inc,
    )
    await validator.load()
    return validator


async def _follow_pool(
    host, nursery, validator: Validator, binding_domain: TypedDomain, metrics: ValidatorMetrics
) -> _Pool:
    """Subscribe to the model's pool heartbeats and attestations, and to the validators' topics; keep
    connected to the pool's members (their heartbeats reach only connected subscribers)."""
    model_id = validator.reference.model_id
    pool = _Pool(PoolView(model_id, binding_domain))
    await host.gossip.subscribe(pool_topic(model_id), pool.view.validate)
    nursery.start_soon(MemberDialer(host, WatchSettings()).keep_connected, model_id, pool.view)
    await _subscribe(
        host,
        nursery,
        attestation_topic(model_id),
        attestation_validator(model_id, lambda key: False),
        lambda data: _take_attestation(pool, data),
    )
    for topic, validate in validator.topic_validators().items():
        await _subscribe(host, nursery, topic, validate, _delivering(validator, topic, metrics))
    return pool


class _Sampling:
    """Challenges of the pool's members (`_serve_sampling`): what a drain stops and then waits for."""

    def __init__(
        self, config: ValidatorConfig, metrics: ValidatorMetrics, wallets: list[CreditWallet]
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.prompts = (
            load_prompts(config.challenge_prompts) if config.challenge_prompts is not None else GENERATED
        )
        self.sender = ChallengeSender(
            config.data_dir,
            config.bootstrap,
            per_host=config.challenges_per_host,
            timeout=config.challenge_timeout,
            wallets=wallets,
        )
        self.scope = trio.CancelScope()
        self.in_flight = InFlight(metrics.in_flight.set)

    async def start(self, nursery: trio.Nursery, validator: Validator, pool: _Pool) -> None:
        await nursery.start(self.sender.serve)
        nursery.start_soon(
            _serve_sampling,
            validator,
            self.sender,
            pool,
            self.config,
            self.metrics,
            self.scope,
            self.in_flight,
            self.prompts,
        )

    def drain(self, timeout: float) -> Drain:
        """No new challenges; those in flight finish."""

        def begin() -> None:
            self.scope.cancel()
            log.info("draining: no new challenges, %d in flight", self.in_flight.count)

        def unfinished() -> None:
            if self.in_flight.count:
                log.warning("stopping with %d challenges unfinished", self.in_flight.count)

        return Drain(begin, self.in_flight.wait_idle, unfinished, timeout)


async def _start_money_loop(
    config: ValidatorConfig,
    host,
    chain: SlashingChain | None,
    validator: Validator,
    network: _Network,
    metrics: ValidatorMetrics,
    stack: contextlib.AsyncExitStack,
    nursery: trio.Nursery,
) -> tuple | None:
    """With a chain: set refreshes, challenge credit, shared answers, the evidence store, settlement and
    the buyback keeper; (chain client, evidence store, settlement, keeper) for the status page."""
    if chain is None:
        return None
    nursery.start_soon(_serve_set_refresh, validator, chain, config.chain_refresh, metrics)
    await nursery.start(track_challenge_credit, network.challenge_wallets, chain.client, config.chain_refresh)
    await nursery.start(_serve_shared_answers, host, validator, chain, metrics)
    store = await stack.enter_async_context(
        open_evidence_store(config.data_dir, epoch_ms=config.epoch_seconds * 1000)
    )
    settlement = await nursery.start(
        functools.partial(
            serve_settlement,
            host,
            chain.client,
            store,
            settlement_config(config),
            awards=functools.partial(_awards, validator, chain, config.epoch_seconds * 1000),
            banned=validator.banned_operators,
            trees_dir=config.data_dir / "rewards",
        )
    )
    keeper = await nursery.start(
        serve_buyback_keeper, chain.client, KeeperConfig(config.keeper_interval_seconds)
    )
    return chain.client, store, settlement, keeper


def _health(daemon: Daemon, pool: _Pool, sampling: _Sampling, wallet: EthAccount) -> Callable[[], dict]:
    """GET /health's answer."""

    def health() -> dict:
        return {
            "status": "draining" if daemon.draining else "ok",
            "nodes": len(pool.view.members()),
            "in_flight": sampling.in_flight.count,
            "validator": "0x" + wallet.address.hex(),
        }

    return health


def _ready_document(
    host, metrics_url: str, wallet: EthAccount, validators: QuorumRule, reference: Reference, chain
) -> dict:
    return ready_document(
        host,
        {
            "metrics": f"{metrics_url}/metrics",
            "health": f"{metrics_url}/health",
            "dashboard": f"{metrics_url}/dashboard",
            "validator": "0x" + wallet.address.hex(),
            "in_validator_set": validators.is_validator(wallet.address),
            "model": reference.model_id.hex(),
            "model_name": reference.name,
            "chain": chain.client.rpc_url if chain is not None else None,
        },
    )


def settlement_config(config: ValidatorConfig) -> SettlementConfig:
    """The money loop's settings, from the validator's."""
    return SettlementConfig(
        epoch_seconds=config.epoch_seconds,
        submit_grace_seconds=config.submit_grace_seconds,
        sync_delay_seconds=config.sync_delay_seconds,
        sync_timeout_seconds=config.sync_timeout_seconds,
        relay_stagger_seconds=config.relay_stagger_seconds,
        poll_seconds=config.settlement_poll_seconds,
        announce_seconds=config.announce_seconds,
    )


async def _awards(validator: Validator, chain: SlashingChain, epoch_ms: int, epoch: int) -> dict[str, int]:
    """The protocol awards of `epoch` (wei per account), from the chain at its closing block
    (`Validator.awards`), booked in the state's rewards table for `dolphin validator rewards`."""
    block = await trio.to_thread.run_sync(find_closing_block, chain.client, epoch, epoch_ms)
    if block is None:
        return {}
    rows = await trio.to_thread.run_sync(validator.awards, epoch, block)
    await validator.state.store_rewards(rows)
    totals: dict[str, int] = {}
    for row in rows:
        account = "0x" + row.account.hex()
        totals[account] = totals.get(account, 0) + row.amount
    return totals


async def _subscribe(host, nursery, topic: str, validate, handle: Callable[[bytes], Awaitable[None]]) -> None:
    """Subscribe with `validate` and hand each accepted message to `handle`; a handler that fails is logged,
    never fatal (a peer's message must not end the daemon)."""
    subscription = await host.gossip.subscribe(topic, validate)

    async def consume() -> None:
        async for message in subscription:
            try:
                await handle(message.data)
            except (ValidatorError, ChainError, P2PError, ValueError) as exc:
                log.warning("could not act on a message on %s: %s", topic, exc)

    nursery.start_soon(consume)


async def _take_attestation(pool: _Pool, data: bytes) -> None:
    pool.record_attestation(envelope.open_signed(data, BenchmarkAttestation, check_time=False))


def _delivering(
    validator: Validator, topic: str, metrics: ValidatorMetrics
) -> Callable[[bytes], Awaitable[None]]:
    async def handle(data: bytes) -> None:
        banned = len(validator.book.banned())  # a notice that passes gossip may still not be upheld
        if topic == STRIKES_TOPIC:
            signed = envelope.open_signed(data, StrikeReport, check_time=False)
            if signed.message.validator != validator.address:
                counted = await validator.on_strike(signed)
                metrics.strikes_received.labels("yes" if counted else "no").inc()
        else:
            await validator.deliver(topic, data)
        metrics.bans.inc(len(validator.book.banned()) - banned)

    return handle


async def _serve_sampling(
    validator: Validator,
    sender: ChallengeSender,
    pool: _Pool,
    config: ValidatorConfig,
    metrics: ValidatorMetrics,
    scope: trio.CancelScope,
    in_flight: InFlight,
    prompts: Sequence[tuple[str, Chat]],
) -> None:
    """Challenge each pool member at its suspicion's rate, at most `concurrency` at once, until `scope` is
    cancelled (challenges already started run on, in their own nursery)."""
    rng = random.SystemRandom()
    due: dict[bytes, float] = {}
    busy: set[bytes] = set()
    limiter = trio.CapacityLimiter(config.concurrency)

    async def challenge(member: Member) -> None:
        key = member.contact.node_key
        try:
            async with limiter:
                drawn = draw_challenge(rng, max_tokens=config.challenge_max_tokens, prompts=prompts)
                try:
                    answer = await sender.challenge(
                        member.contact, drawn, attestation=pool.attestations.get(key)
                    )
                except ChallengeFailed as exc:
                    log.info("%s", exc)
                    metrics.challenges.labels("unanswered").inc()
                    await validator.unanswered(key)
                    return
                try:
                    verdict = await validator.judge(answer)
                except ReferenceModelError as exc:
                    log.warning("could not check an answer of %s: %s", member.contact.peer_id, exc)
                    metrics.challenges.labels("unchecked").inc()
                    return
                metrics.challenges.labels("failed" if verdict.failed else "passed").inc()
                for failure in verdict.failures:
                    metrics.check_failures.labels(failure.name).inc()
                if verdict.strike is not None and validator.validators.is_validator(validator.address):
                    metrics.strikes_published.inc()
        finally:
            busy.discard(key)
            in_flight.end()
            due[key] = trio.current_time() + validator.suspicion(key).next_delay(rng)

    async with trio.open_nursery() as running:
        with scope:
            while True:
                now = trio.current_time()
                for member in pool.view.members():
                    key = member.contact.node_key
                    validator.node_seen(key, member.operator)
                    if key in busy or validator.status(key) == "banned":
                        continue
                    due.setdefault(key, now + validator.suspicion(key).next_delay(rng))
                    if due[key] <= now:
                        busy.add(key)
                        in_flight.start()
                        running.start_soon(challenge, member)
                await trio.sleep(0.25)


SHARED_QUEUE = 32  # shared answers waiting for the reference; more are dropped (the reference is the cost)
MAX_SHARED_BYTES = 64 * 1024  # what a strike report can carry as its evidence
ANNOUNCEMENT_LIFETIME_S = 3600


async def _serve_shared_answers(
    host, validator: Validator, chain: SlashingChain, metrics: ValidatorMetrics, *, task_status
) -> None:
    """Take clients' shared answers on AUDIT_PROTOCOL (`pool.audits`): show our signed announcement
    (the client checks that we are a current validator before it sends the prompt), read the answer, and
    check it in the background, one at a time, through `Validator.on_shared_answer`."""
    send, receive = trio.open_memory_channel[bytes](SHARED_QUEUE)
    identity = Identity(host.signing_seed())
    domain = chain.client.domain("ValidatorQuorum")

    async def handle(stream) -> None:
        try:
            announcement = sign_announcement(
                identity,
                peer_id_from_text(host.peer_id),
                validator.wallet,
                domain,
                host.advertised_addrs() or ["/ip4/127.0.0.1/tcp/0"],
                expiry=int(time.time()) + ANNOUNCEMENT_LIFETIME_S,
            )
            await stream.write_message(announcement)
            data = await stream.read_message(MAX_SHARED_BYTES, timeout=30)
        except P2PError as exc:
            log.info("a shared answer from %s did not arrive: %s", stream.peer_id, exc)
            return
        finally:
            await stream.close()
        try:
            send.send_nowait(data)
        except trio.WouldBlock:
            metrics.audits.labels("dropped").inc()

    async def check_all() -> None:
        async for data in receive:
            try:
                verdict = await validator.on_shared_answer(data)
            except ReferenceModelError as exc:
                log.warning("could not check a shared answer: %s", exc)
                metrics.audits.labels("unchecked").inc()
                continue
            if verdict is None:
                metrics.audits.labels("ignored").inc()
                continue
            metrics.audits.labels("failed" if verdict.failed else "passed").inc()
            for failure in verdict.failures:
                metrics.check_failures.labels(failure.name).inc()
            if verdict.strike is not None and validator.validators.is_validator(validator.address):
                metrics.strikes_published.inc()

    host.set_stream_handler(AUDIT_PROTOCOL, handle)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(check_all)
        task_status.started()
        await trio.sleep_forever()


async def _serve_standings(validator: Validator, interval: float, metrics: ValidatorMetrics) -> None:
    while True:
        await trio.sleep(interval)
        statuses = [validator.status(node) for node in validator.nodes()]
        for status in ("good", "suspect", "excluded", "banned"):
            metrics.nodes.labels(status).set(statuses.count(status))
        await validator.publish_standings()
        await validator.republish()


async def _serve_decisions(validator: Validator) -> None:
    while True:
        await trio.sleep(DECISION_INTERVAL_S)
        try:
            await validator.sign_decisions()
        except ChainError as exc:
            log.warning("could not sign or submit slashing decisions: %s", exc)


async def _serve_set_refresh(validator: Validator, chain: SlashingChain, interval: float, metrics) -> None:
    while True:
        await trio.sleep(interval)
        try:
            validator.validators = await trio.to_thread.run_sync(chain.quorum_rule)
            rules = BanRules.from_chain(await trio.to_thread.run_sync(chain.strike_rules))
            validator.policy = validator.book.policy = validator.policy.with_rules(rules)
            metrics.validator_set.set(len(validator.validators.weights))
        except ChainError as exc:
            log.warning("could not refresh the validator set (keeping the last one): %s", exc)
