"""The pool watcher: what a light client or gateway knows about the pools it uses, kept fresh.

Per model it watches (`watch`):
- members from signed heartbeats (`PoolView`), evicted when not heard from within the TTL;
- the members' benchmark attestations (`AttestationBook`);
- discovery: the model's DHT pool records are looked up (quickly until the first member is heard, then
  every `discovery_interval` s) and their peers dialled, since heartbeats reach only connected
  subscribers.

For every model:
- the gossiped ban list (`BanList`): a banned node is never a candidate;
- validators' standings (`StandingBook`);
- chain facts when a chain is configured (`ChainFacts`): validators, registration, bonds. Without a chain
  nobody is a validator, so there are no standings or bans to honour, and registration is what a node's
  binding claims (unchecked).

What the network serves (`watch_catalogue`, for gateways and `dolphin model list`): every node also
heartbeats MODELS_TOPIC and stores its addresses under MODELS_RECORD; the watcher dials those peers,
listens, and watches each model it hears of (up to `max_catalogue_models`), so `served()` lists them all.

Model names: a model is named by its id (64 hex digits) or by its manifest's name. A name resolves
through the name's DHT key and heartbeat topic (`protocols.ids.model_name_key/_topic`, which nodes
announce on too): the id the most nodes announce under that name wins — registered nodes counted first
when there is a chain, since anyone can claim a popular name for another model. Several ids under one
name are logged; the caller can always name the id instead.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn

import trio

from p2p import (
    DolphinHost,
    GossipMessage,
    P2PError,
    Subscription,
    Validator,
    Verdict,
    signed_message_validator,
)
from pool.attestations import AttestationBook
from pool.bans import BanList, BanRules
from pool.chainfacts import ChainFacts
from pool.contact import NodeContact
from pool.errors import UnknownModel
from pool.membership import Member, PoolView, ask_for_heartbeat
from pool.routing import Candidate
from pool.standing import StandingBook
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.eth import TypedDomain
from protocols.ids import (
    BANS_TOPIC,
    MODELS_RECORD,
    MODELS_TOPIC,
    STANDING_TOPIC,
    attestation_topic,
    model_name_key,
    model_name_topic,
    pool_topic,
)
from protocols.keys import peer_id_from_text, peer_id_to_text
from protocols.messages import PoolHeartbeat

__all__ = [
    "MemberDialer",
    "PoolWatcher",
    "ServedModel",
    "WatchSettings",
    "WatchedPool",
    "looks_like_folder",
    "open_pool_watcher",
    "parse_model_id",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchSettings:
    discovery_interval: float = 10.0  # seconds between DHT lookups once a pool has members
    first_discovery_interval: float = 0.5  # ... before it has any
    member_max_age_ms: int = 30_000  # heartbeat TTL: members silent for longer are dropped
    dial_concurrency: int = 8
    redial_after: float = 30.0  # seconds before a peer that could not be dialled is tried again
    name_settle: float = 1.0  # after a name's first heartbeat, how long to listen for other ids
    max_catalogue_models: int = 64  # most models `watch_catalogue` starts watching (each costs topics)


@dataclass(frozen=True)
class Domains:
    """The EIP-712 domains signed gossip is checked under: operator bindings (Bonding) and validators'
    statements (strike reports in bans, standings)."""

    bindings: TypedDomain | None
    validators: TypedDomain | None


@dataclass(frozen=True)
class ServedModel:
    """One model the network serves now, as `PoolWatcher.served` sums it up."""

    model: bytes
    name: str
    nodes: int
    attested_tokens_per_s: float | None  # the median of its live nodes' attested decode speeds


@dataclass
class WatchedPool:
    """One model's pool: members, attestations, and whether anyone has been heard from yet."""

    model: bytes
    view: PoolView
    attestations: AttestationBook
    heard: trio.Event = field(default_factory=trio.Event)

    def hear(self, message: GossipMessage) -> Verdict:
        """The pool topic's validator: the view's, and `heard` set by the first member it accepts."""
        verdict = self.view.validate(message)
        if verdict is Verdict.ACCEPT:
            self.heard.set()
        return verdict


def parse_model_id(text: str) -> bytes | None:
    """The model id `text` spells in hex (64 digits, optionally 0x), or None when it is not one."""
    digits = text.removeprefix("0x")
    if len(digits) != 64:
        return None
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return None


class _NameDirectory:
    """Heartbeats on a name's topic: which model ids nodes announce under the name (validator + record)."""

    def __init__(self, name: str, max_age_ms: int) -> None:
        self.name = name
        self.max_age_ms = max_age_ms
        self._seen: dict[bytes, dict[str, tuple[int, bytes | None]]] = {}  # id -> peer -> (heard, operator)
        self.heard = trio.Event()
        self.validate = signed_message_validator(PoolHeartbeat, authorise=self._admit, on_accept=self._record)

    def _admit(self, signed: envelope.Signed[PoolHeartbeat]) -> bool:
        return signed.peer_id == signed.message.peer_id and signed.message.model_name == self.name

    def _record(self, signed: envelope.Signed[PoolHeartbeat]) -> None:
        heartbeat = signed.message
        operator = heartbeat.binding.operator if heartbeat.binding is not None else None
        peers = self._seen.setdefault(heartbeat.model, {})
        peers[peer_id_to_text(heartbeat.peer_id)] = (time.time_ns() // 1_000_000, operator)
        self.heard.set()

    def announcers(self, now_ms: int) -> dict[bytes, list[tuple[str, bytes | None]]]:
        """Model id -> (peer id, claimed operator) of the nodes heard announcing it lately."""
        return {
            model: [
                (peer, operator)
                for peer, (heard, operator) in peers.items()
                if now_ms - heard <= self.max_age_ms
            ]
            for model, peers in self._seen.items()
        }


def looks_like_folder(model: str) -> bool:
    """Whether `model` is written as a filesystem path (absolute, home- or dot-relative): what a user
    means as a model folder, never a manifest name (those may hold a '/', as in "org/model", but do not
    start like a path)."""
    return model.startswith(("/", "~", "./", "../"))


class MemberDialer:
    """Keeps a peer connected to the members of the pools it follows. Gossip travels only between connected
    subscribers, so a member no one dials is heard by no one: clients and validators alike look the pool's
    DHT records up and dial the members they are not connected to."""

    def __init__(self, host: DolphinHost, settings: WatchSettings) -> None:
        self.host = host
        self.settings = settings
        self._dial_failures: dict[str, float] = {}

    async def keep_connected(self, model: bytes, view: PoolView, hear: Validator | None = None) -> NoReturn:
        """Dial `model`'s members now and every `discovery_interval` s (`first_discovery_interval` while
        `view` has none). A member connected but not in `view` is asked for its latest heartbeat, which goes
        through `hear` (the pool topic's validator, `view.validate` unless given) as gossip would: the next
        one by gossip could be a heartbeat interval away, and a first request needs it."""
        hear = view.validate if hear is None else hear

        async def greet(peer_id: str) -> None:
            if all(member.contact.peer_id != peer_id for member in view.members()):
                await ask_for_heartbeat(self.host, peer_id, model, hear)

        while True:
            # Until a member is heard from, any member found fast beats all of them found late.
            await self.dial_members(model, quick=not view.members(), greet=greet)
            members = view.members()
            interval = self.settings.discovery_interval if members else self.settings.first_discovery_interval
            await trio.sleep(interval)

    def _due(self, peer_id: str) -> bool:
        """Whether to dial `peer_id` now: not us, not connected, not failed within `redial_after`."""
        return (
            peer_id != self.host.peer_id
            and peer_id not in self.host.connected_peers()
            and trio.current_time() - self._dial_failures.get(peer_id, -1e9) >= self.settings.redial_after
        )

    async def dial_members(
        self, key: bytes, *, quick: bool = False, greet: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        """Look `key` up in the DHT and dial the members we are not connected to (`quick`: see
        `Dht.get_records`): first at the addresses their provider entries name, while their signed records
        are fetched (three round trips saved), then, for those that did not answer there, at the records'.
        `greet(peer_id)` runs once for each member connected by the end, dialled now or before."""
        limiter = trio.CapacityLimiter(self.settings.dial_concurrency)
        hearsay: dict[str, trio.Event] = {}
        greeted: set[str] = set()

        def greet_once(peer_id: str) -> None:
            if greet is not None and peer_id not in greeted and peer_id != self.host.peer_id:
                greeted.add(peer_id)
                nursery.start_soon(greet, peer_id)

        async def dial_hearsay(peer_id: str, addrs: list[str], done: trio.Event) -> None:
            try:
                async with limiter:
                    await self.host.connect_any(peer_id, addrs)
            except P2PError as exc:
                log.debug("pool member %s not reached where its provider entry says: %s", peer_id, exc)
            else:
                greet_once(peer_id)
            finally:
                done.set()

        async def dial(record) -> None:
            if record.peer_id in hearsay:
                await hearsay[record.peer_id].wait()
            if record.peer_id in self.host.connected_peers():
                greet_once(record.peer_id)
            if not self._due(record.peer_id):
                return
            try:
                async with limiter:
                    await self.host.connect_any(record.peer_id, record.addrs)
            except P2PError as exc:
                if record.peer_id not in self._dial_failures:  # once per peer until it is reached
                    log.warning(
                        "cannot reach pool member %s (retrying every %g s): %s",
                        record.peer_id,
                        self.settings.redial_after,
                        exc,
                    )
                self._dial_failures[record.peer_id] = trio.current_time()
                return
            if self._dial_failures.pop(record.peer_id, None) is not None:
                log.info("pool member %s reached after all", record.peer_id)
            greet_once(record.peer_id)

        async with trio.open_nursery() as nursery:

            def found(peer_id: str, addrs: list[str]) -> None:
                if peer_id not in hearsay and self._due(peer_id):
                    hearsay[peer_id] = trio.Event()
                    nursery.start_soon(dial_hearsay, peer_id, addrs, hearsay[peer_id])

            try:
                records = await self.host.dht.get_records(key, quick=quick, on_member=found)
            except P2PError as exc:
                log.debug("DHT lookup failed (retrying): %s", exc)
                return
            for record in records:
                nursery.start_soon(dial, record)


class PoolWatcher:
    """See the module docstring. Made by `open_pool_watcher`, which runs its background tasks."""

    def __init__(
        self,
        host: DolphinHost,
        nursery: trio.Nursery,
        *,
        domains: Domains,
        chain: ChainFacts | None,
        settings: WatchSettings,
    ) -> None:
        self.host = host
        self.chain = chain
        self.domains = domains
        self.settings = settings
        self._nursery = nursery
        self._pools: dict[bytes, WatchedPool] = {}
        self._names: dict[str, bytes] = {}
        self._directories: dict[str, _NameDirectory] = {}
        self._lock = trio.Lock()
        self._dialer = MemberDialer(host, settings)
        self._catalogue: set[bytes] | None = None  # models heard on MODELS_TOPIC, once watching it
        validators = domains.validators
        is_validator = chain.is_validator if chain is not None else (lambda address: False)
        rules = chain.ban_rules if chain is not None else BanRules
        self.bans = BanList(validators, is_validator, rules) if validators is not None else None
        self.standings = StandingBook(validators, is_validator) if validators is not None else None

    async def _start(self) -> None:
        if self.bans is not None:
            self._drain(await self.host.gossip.subscribe(BANS_TOPIC, self.bans.validate))
        if self.standings is not None:
            self._drain(await self.host.gossip.subscribe(STANDING_TOPIC, self.standings.validate))

    def _drain(self, subscription: Subscription) -> None:
        """Validators record what passes; the subscription's own queue is read and dropped so it never
        fills (py-libp2p drops quietly when it does)."""

        async def drain() -> None:
            async for _ in subscription:
                pass

        self._nursery.start_soon(drain)

    @property
    def has_chain(self) -> bool:
        return self.chain is not None

    # ---- pools ----
    async def watch(self, model: bytes) -> WatchedPool:
        """Start watching `model`'s pool (once; later calls return the same pool)."""
        async with self._lock:
            pool = self._pools.get(model)
            if pool is not None:
                return pool
            view = PoolView(model, self.domains.bindings, max_age_ms=self.settings.member_max_age_ms)
            attestations = AttestationBook(model, is_validator_peer=lambda key: False)
            pool = WatchedPool(model, view, attestations)
            self._drain(await self.host.gossip.subscribe(pool_topic(model), pool.hear))
            self._drain(await self.host.gossip.subscribe(attestation_topic(model), attestations.validate))
            self._pools[model] = pool
            self._nursery.start_soon(self._discover, pool)
            return pool

    def watched(self) -> list[WatchedPool]:
        return list(self._pools.values())

    async def _discover(self, pool: WatchedPool) -> None:
        await self._dialer.keep_connected(pool.model, pool.view, pool.hear)

    async def wait_for_members(self, model: bytes, timeout: float) -> list[Member]:
        """The pool's members, waiting up to `timeout` s for the first heartbeat; [] if none came."""
        pool = await self.watch(model)
        with trio.move_on_after(timeout):
            await pool.heard.wait()
            while not pool.view.members():  # heard once, but those members have gone quiet since
                await trio.sleep(0.1)
        return pool.view.members()

    # ---- what the network serves ----
    async def watch_catalogue(self) -> None:
        """Find every pool (module docstring); idempotent. Models heard of are watched in the background."""
        if self._catalogue is not None:
            return
        self._catalogue = set()
        validate = signed_message_validator(
            PoolHeartbeat,
            authorise=lambda signed: signed.peer_id == signed.message.peer_id,
            on_accept=self._heard_in_catalogue,
        )
        self._drain(await self.host.gossip.subscribe(MODELS_TOPIC, validate))
        self._nursery.start_soon(self._discover_catalogue)

    def _heard_in_catalogue(self, signed: envelope.Signed[PoolHeartbeat]) -> None:
        assert self._catalogue is not None
        model = signed.message.model
        if model in self._catalogue or model in self._pools:
            return
        if len(self._catalogue) >= self.settings.max_catalogue_models:
            return  # a flood of made-up models must not make us watch without end
        self._catalogue.add(model)
        self._nursery.start_soon(self.watch, model)

    async def _discover_catalogue(self) -> None:
        while True:
            await self._dialer.dial_members(MODELS_RECORD)
            heard = bool(self._catalogue)
            await trio.sleep(
                self.settings.discovery_interval if heard else self.settings.first_discovery_interval
            )

    def served(self, now_ms: int | None = None) -> list[ServedModel]:
        """The watched models with live, unbanned nodes, by name."""
        found = []
        for pool in self.watched():
            candidates = self.candidates(pool.model, now_ms)
            if not candidates:
                continue
            speeds = [c.attested_tokens_per_s for c, _ in candidates if c.attested_tokens_per_s]
            speed = statistics.median(speeds) if speeds else None
            found.append(ServedModel(pool.model, self.name_of(pool.model), len(candidates), speed))
        return sorted(found, key=lambda served: (served.name, served.model))

    # ---- names ----
    def known_id(self, model: str) -> bytes | None:
        """The id `model` names without asking the network: its hex, or a name resolved before."""
        return parse_model_id(model) or self._names.get(model)

    async def resolve(self, model: str, *, timeout: float = 15.0) -> bytes:
        """The model id `model` names: its hex, or a manifest name (module docstring). UnknownModel when
        no node announces the name within `timeout` s."""
        model_id = self.known_id(model)
        if model_id is not None:
            return model_id
        if looks_like_folder(model):
            # No manifest name has this shape, so no node will ever announce it: say so now, not in 15 s.
            raise UnknownModel(
                f"{model!r} is a folder path, not a model id or name (a model folder is taken where one "
                "exists on this machine; `dolphin model verify FOLDER` prints its id)"
            )
        try:
            key = model_name_key(model)
        except ProtocolError as exc:
            raise UnknownModel(f"{model!r} is neither a model id nor a model name") from exc
        directory = self._directories.get(model)
        if directory is None:
            directory = _NameDirectory(model, self.settings.member_max_age_ms)
            self._directories[model] = directory
            self._drain(await self.host.gossip.subscribe(model_name_topic(model), directory.validate))
        with trio.move_on_after(timeout):
            while not directory.heard.is_set():
                await self._dialer.dial_members(key, quick=True)
                with trio.move_on_after(self.settings.first_discovery_interval):
                    await directory.heard.wait()
            await trio.sleep(self.settings.name_settle)
        model_id = self._choose_id(directory)
        if model_id is None:
            raise UnknownModel(f"no node serves a model called {model!r}")
        self._names[model] = model_id
        return model_id

    def _choose_id(self, directory: _NameDirectory) -> bytes | None:
        announcers = directory.announcers(time.time_ns() // 1_000_000)
        if not announcers:
            return None

        def support(model: bytes) -> tuple[int, int, bytes]:
            peers = announcers[model]
            registered = sum(
                1
                for peer, operator in peers
                if self.chain is not None and self.chain.registered(peer_id_from_text(peer), operator)
            )
            return registered, len(peers), model

        ranked = sorted(announcers, key=support, reverse=True)
        if len(ranked) > 1:
            log.warning(
                "%d models are announced as %r; using %s (%d nodes); others: %s",
                len(ranked),
                directory.name,
                ranked[0].hex(),
                len(announcers[ranked[0]]),
                ", ".join(m.hex() for m in ranked[1:]),
            )
        return ranked[0]

    def name_of(self, model: bytes) -> str:
        """The name this model goes by: the one its members announce most (its hex id when none)."""
        names: dict[str, int] = {}
        pool = self._pools.get(model)
        for member in pool.view.members() if pool is not None else []:
            if member.model_name:
                names[member.model_name] = names.get(member.model_name, 0) + 1
        for name, resolved in self._names.items():
            if resolved == model:
                return name
        return max(names, key=lambda n: (names[n], n)) if names else model.hex()

    # ---- what the router sees ----
    def candidates(self, model: bytes, now_ms: int | None = None) -> list[tuple[Candidate, NodeContact]]:
        """The pool's live, unbanned members as router candidates, each with how to reach it."""
        pool = self._pools.get(model)
        if pool is None:
            return []
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        found = []
        for member in pool.view.members(now_ms):
            node_key = member.contact.node_key
            if self.bans is not None and self.bans.banned(node_key, now_ms):
                continue
            if self.chain is not None:
                peer_id = peer_id_from_text(member.contact.peer_id)
                registered = self.chain.registered(peer_id, member.operator)
                bonded = registered and self.chain.bonded(member.operator)
            else:
                registered, bonded = member.registered, False
            standing = (
                self.standings.standing(node_key, model, now_ms) if self.standings is not None else None
            )
            speed = pool.attestations.speed(node_key)
            candidate = Candidate(
                peer_id=member.contact.peer_id,
                capacity=member.capacity,
                load=member.load,
                queued=member.queued,
                registered=registered,
                bonded=bonded,
                standing=standing.status if standing is not None else None,
                suspicion=standing.suspicion if standing is not None else None,
                attested_tokens_per_s=speed.tokens_per_s if speed is not None else None,
                attested_ttft_s=speed.ttft_s if speed is not None else None,
            )
            found.append((candidate, member.contact))
        return found


@contextlib.asynccontextmanager
async def open_pool_watcher(
    host: DolphinHost,
    *,
    bindings_domain: TypedDomain | None = None,
    validators_domain: TypedDomain | None = None,
    chain: ChainFacts | None = None,
    settings: WatchSettings = WatchSettings(),
) -> AsyncIterator[PoolWatcher]:
    """A watcher over `host`, its background tasks running until the block exits. With `chain`, its facts
    are refreshed in the background too (the first round before this yields)."""
    async with trio.open_nursery() as nursery:
        if chain is not None:
            await nursery.start(chain.serve)
        watcher = PoolWatcher(
            host,
            nursery,
            domains=Domains(bindings_domain, validators_domain),
            chain=chain,
            settings=settings,
        )
        await watcher._start()
        try:
            yield watcher
        finally:
            nursery.cancel_scope.cancel()
