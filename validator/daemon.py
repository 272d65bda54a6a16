"""`serve_validator(config)`: the validator daemon validators run for weeks.

On start, in this order (each step logged):
1. load the wallet key (`<data dir>/validator.key` unless `key_file` names one) and the reference model,
   verified against its manifest (its hash is the pool's model id);
2. find the chain, if any: the validator set (whose strikes count, and how much each weighs), the
   domains messages are signed under, slashing, and credit for challenges; without one, the set is the
   configured `validators` plus this one, and nothing is slashed;
3. open the state (`validator.sqlite`) and restore suspicions, strikes, bans and decisions from it;
4. start the libp2p host and subscribe to the model's pool heartbeats and benchmark attestations, and to
   strikes, bans, decisions and users' reports (each through its topic validator);
5. serve /metrics, /health, /status and the dashboard (/dashboard), write ready.json, and run: sampling
   (each pool member challenged at the rate its suspicion sets, a few at a time, from throwaway
   light-client hosts), with a chain the checks of the real answers clients share over AUDIT_PROTOCOL
   (`pool.audits`), re-verification of others' strikes, standings on STANDING_TOPIC, decisions and
   slashing, validator-set refreshes;
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
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio_asyncio
from prometheus_client import Gauge

from chain.client import ChainClient, read_key_file
from chain.errors import ChainError
from chain.locate import ChainLocation
from chain.quorum import QuorumRule
from node.files import write_atomically
from node.local_api import serve_local_api
from p2p import HostConfig, P2PError, open_host
from p2p.daemon import check_data_dir_free, drain, ready_document, write_ready_file
from p2p.ports import check_http_address, check_listen_addrs
from pool import Member, PoolView, sign_announcement
from pool.attestations import attestation_validator
from pool.bans import BanRules
from protocols import envelope
from protocols.eth import EthAccount, TypedDomain
from protocols.ids import AUDIT_PROTOCOL, STRIKES_TOPIC, attestation_topic, pool_topic
from protocols.keys import Identity, peer_id_from_text
from protocols.messages import BenchmarkAttestation, StrikeReport
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
from validator.service import Validator
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
    check_data_dir_free(config.data_dir)
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
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
    prompts = load_prompts(config.challenge_prompts) if config.challenge_prompts is not None else GENERATED
    thresholds = thresholds_for(reference.name, config.threshold_overrides())
    suspicion = SuspicionModel(
        prior=config.prior,
        detection=config.detection,
        false_positive=config.false_positive,
        report_factor=config.report_factor,
        base_per_hour=config.base_per_hour,
        max_per_hour=config.max_per_hour,
    )
    policy = StrikePolicy(
        exclude_points=config.exclude_points,
        ban_points=config.ban_points,
        ban_validators=config.ban_validators,
        exclusion_epochs=config.exclusion_epochs,
        window_epochs=config.strike_window_epochs,
    )
    if chain is not None:
        validators = await trio.to_thread.run_sync(chain.quorum_rule)
        rules = BanRules.from_chain(await trio.to_thread.run_sync(chain.strike_rules))
        policy = policy.with_rules(rules)  # the network's ban rules, not this validator's config
        domain, binding_domain = chain.domain(), chain.domain("Bonding")
        challenge_wallets = open_challenge_wallets(
            config.challenge_wallet_file, config.challenge_wallets, chain.domain("Credits")
        )
    else:
        validators, domain, binding_domain, challenge_wallets = (
            _static_set(config, wallet),
            NO_CHAIN_DOMAIN,
            NO_CHAIN_DOMAIN,
            [],
        )
    metrics.validator_set.set(len(validators.weights))
    if not validators.is_validator(wallet.address):
        log.warning(
            "0x%s is not in the current validator set: checking nodes, but striking nobody",
            wallet.address.hex(),
        )
    host_config = HostConfig(config.data_dir, listen=config.listen, bootstrap=config.bootstrap)
    sender = ChallengeSender(
        config.data_dir,
        config.bootstrap,
        per_host=config.challenges_per_host,
        timeout=config.challenge_timeout,
        wallets=challenge_wallets,
    )
    draining = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            trio_asyncio.open_loop(),
            open_state(config.data_dir) as state,
            open_host(host_config) as host,
            contextlib.AsyncExitStack() as stack,
            trio.open_nursery() as nursery,
        ):

            async def publish(topic: str, data: bytes) -> None:
                try:
                    await host.gossip.publish(topic, data)
                except P2PError as exc:
                    log.warning("could not publish on %s: %s", topic, exc)

            validator = Validator(
                peer=Identity(host.signing_seed()),
                wallet=wallet,
                domain=domain,
                reference=reference,
                thresholds=thresholds,
                state=state,
                publish=publish,
                validators=validators,
                policy=policy,
                suspicion=suspicion,
                chain=chain,
                epoch_seconds=config.epoch_seconds,
                on_slash=metrics.slashes.inc,
            )
            await validator.load()
            pool = _Pool(PoolView(reference.model_id, binding_domain))
            await host.gossip.subscribe(pool_topic(reference.model_id), pool.view.validate)
            await _subscribe(
                host,
                nursery,
                attestation_topic(reference.model_id),
                attestation_validator(reference.model_id, lambda key: False),
                lambda data: _take_attestation(pool, data),
            )
            for topic, validate in validator.topic_validators().items():
                await _subscribe(host, nursery, topic, validate, _delivering(validator, topic, metrics))
            await nursery.start(sender.serve)
            sampling = trio.CancelScope()
            in_flight = _InFlight(metrics.in_flight)
            nursery.start_soon(
                _serve_sampling, validator, sender, pool, config, metrics, sampling, in_flight, prompts
            )
            nursery.start_soon(_serve_standings, validator, config.standing_interval, metrics)
            nursery.start_soon(_serve_decisions, validator)
            if chain is not None:
                nursery.start_soon(_serve_set_refresh, validator, chain, config.chain_refresh, metrics)
                await nursery.start(
                    track_challenge_credit, challenge_wallets, chain.client, config.chain_refresh
                )
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

            def health() -> dict:
                return {
                    "status": "draining" if draining else "ok",
                    "nodes": len(pool.view.members()),
                    "in_flight": in_flight.count,
                    "validator": "0x" + wallet.address.hex(),
                }

            status = ValidatorStatus(
                peer_id=host.peer_id,
                validator=validator,
                state=state,
                metrics=metrics,
                health=health,
                model={"name": reference.name, "id": reference.model_id.hex()},
                chain_url=chain.client.rpc_url if chain is not None else None,
            )
            if chain is not None:
                status.chain, status.evidence, status.settlement, status.keeper = (
                    chain.client,
                    store,
                    settlement,
                    keeper,
                )
            await nursery.start(status.serve)
            metrics_url = await nursery.start(
                serve_local_api, build_app(metrics, health, status.snapshot), config.metrics
            )
            document = ready_document(
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
            ready = write_ready_file(config.data_dir, document)
            log.info(
                "validator %s ready: %s; metrics %s",
                host.peer_id,
                ", ".join(host.advertised_addrs()),
                metrics_url,
            )
            task_status.started(document)
            try:
                async for _ in signals:
                    break
                draining = True
                sampling.cancel()
                log.info("draining: no new challenges, %d in flight", in_flight.count)
                if not await drain(signals, in_flight.wait_idle, config.drain_timeout) and in_flight.count:
                    log.warning("stopping with %d challenges unfinished", in_flight.count)
            finally:
                ready.unlink(missing_ok=True)
                nursery.cancel_scope.cancel()
    log.info("stopped")


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


class _InFlight:
    """Challenges in progress (shown by `gauge`), and an event for when there are none."""

    def __init__(self, gauge: Gauge) -> None:
        self.count = 0
        self._gauge = gauge
        self._idle = trio.Event()
        self._idle.set()

    def start(self) -> None:
        self.count += 1
        self._gauge.set(self.count)
        if self.count == 1:
            self._idle = trio.Event()

    def end(self) -> None:
        self.count -= 1
        self._gauge.set(self.count)
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


async def _subscribe(host, nursery, topic: str, validate, handle: Callable[[bytes], Awaitable[None]]) -> None:  # type: ignore[no-untyped-def]
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


async def _serve_sampling(  # type: ignore[no-untyped-def]
    validator: Validator,
    sender: ChallengeSender,
    pool: _Pool,
    config: ValidatorConfig,
    metrics: ValidatorMetrics,
    scope: trio.CancelScope,
    in_flight: _InFlight,
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


async def _serve_shared_answers(  # type: ignore[no-untyped-def]
    host, validator: Validator, chain: SlashingChain, metrics: ValidatorMetrics, *, task_status
) -> None:
    """Take clients' shared answers on AUDIT_PROTOCOL (`pool.audits`): show our signed announcement
    (the client checks that we are a current validator before it sends the prompt), read the answer, and
    check it in the background, one at a time, through `Validator.on_shared_answer`."""
    send, receive = trio.open_memory_channel[bytes](SHARED_QUEUE)
    identity = Identity(host.signing_seed())
    domain = chain.client.domain("ValidatorQuorum")

    async def handle(stream) -> None:  # type: ignore[no-untyped-def]
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


async def _serve_set_refresh(validator: Validator, chain: SlashingChain, interval: float, metrics) -> None:  # type: ignore[no-untyped-def]
    while True:
        await trio.sleep(interval)
        try:
            validator.validators = await trio.to_thread.run_sync(chain.quorum_rule)
            rules = BanRules.from_chain(await trio.to_thread.run_sync(chain.strike_rules))
            validator.policy = validator.book.policy = validator.policy.with_rules(rules)
            metrics.validator_set.set(len(validator.validators.weights))
        except ChainError as exc:
            log.warning("could not refresh the validator set (keeping the last one): %s", exc)
