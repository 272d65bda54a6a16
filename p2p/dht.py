"""Kademlia on `/dolphin/kad/1.0.0`: strict validation, and signed pool records keyed by manifest hash.

Layout in the DHT (libp2p kad-dht spec: values under namespaced keys, providers under multihash keys):
- each pool member stores its own signed record (p2p.records) under `/dpool/<manifest-hex>/<peer-id>`;
  the only namespace this DHT accepts (strict validation: any other key is refused, by us and by every
  server we run), and a value there must decode, verify against the peer id in the key, and be unexpired;
- each member also announces itself as a *provider* of sha256("/dpool/" + manifest hash), which
  is how a lookup enumerates the members: one provider query, then one value lookup per member.
Provider entries are unsigned hints; only verified records come back from `get_records`.

py-libp2p 0.8.1 ignores `protocol_prefix` and hard-codes `/ipfs/kad/1.0.0` as a module constant in five
modules; `_use_dolphin_protocol` rebinds them once, process-wide. A Dolphin process never speaks the
public IPFS DHT, so there is nothing for the rebinding to break.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import cast

import multiaddr
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht import common as kad_common
from libp2p.kad_dht import kad_dht as kad_module
from libp2p.kad_dht import peer_routing as kad_peer_routing
from libp2p.kad_dht import provider_store as kad_provider_store
from libp2p.kad_dht import value_store as kad_value_store
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.records.validator import NamespacedValidator, Validator

from p2p.errors import RecordError
from p2p.records import PoolRecord, decode_pool_record, sign_pool_record
from p2p.topics import KAD_PROTOCOL, MANIFEST_HASH_SIZE

logger = logging.getLogger(__name__)

# Kad servers (go-libp2p, and py-libp2p after it) refuse keys over 128 bytes; "/dpool/<64 hex>/<52-char
# Ed25519 peer id>" is 124.
POOL_NAMESPACE = "dpool"
MAX_POOL_MEMBERS_PER_LOOKUP = 64
_SHA256_MULTIHASH_PREFIX = bytes([0x12, 0x20])


def _use_dolphin_protocol() -> None:
    protocol = TProtocol(KAD_PROTOCOL)
    for module in (kad_common, kad_module, kad_peer_routing, kad_provider_store, kad_value_store):
        module.PROTOCOL_ID = protocol  # type: ignore[attr-defined]  # rebinding theirs: module docstring


_use_dolphin_protocol()


def pool_record_key(manifest_hash: bytes, peer_id: str) -> str:
    """The DHT value key of one member's record."""
    _check_manifest_hash(manifest_hash)
    return f"/{POOL_NAMESPACE}/{manifest_hash.hex()}/{peer_id}"


def pool_provider_key(manifest_hash: bytes) -> bytes:
    """The provider key (a sha256 multihash) under which a pool's members announce themselves."""
    _check_manifest_hash(manifest_hash)
    digest = hashlib.sha256(f"/{POOL_NAMESPACE}/".encode() + manifest_hash).digest()
    return _SHA256_MULTIHASH_PREFIX + digest


class PoolRecordValidator(Validator):
    """kad-dht record validator for the pool namespace: a value must be a valid record for its key."""

    def validate(self, key: str, value: bytes) -> None:
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "" or parts[1] != POOL_NAMESPACE:
            raise RecordError(f"not a pool record key: {key[:120]!r}")
        record = decode_pool_record(value)
        if pool_record_key(record.manifest_hash, record.peer_id) != key:
            raise RecordError("pool record stored under another peer's or another model's key")

    def select(self, key: str, values: list[bytes]) -> int:
        # The freshest valid record wins; an invalid one never does (kad-dht spec: Validator.Select).
        best_index, best_expiry = 0, -math.inf
        for index, value in enumerate(values):
            try:
                self.validate(key, value)
            except RecordError:
                continue
            expiry = decode_pool_record(value).expires_at_ms
            if expiry > best_expiry:
                best_index, best_expiry = index, expiry
        return best_index


def build_kad(
    host, mode: DHTMode, *, stream_idle: float, inbound_streams: int, streams_per_peer: int
) -> KadDHT:
    """A KadDHT that stores nothing but verified pool records, its inbound streams guarded
    (`_guard_inbound_streams`)."""
    validator = NamespacedValidator({POOL_NAMESPACE: PoolRecordValidator()}, strict_validation=True)
    kad = KadDHT(
        host,
        mode,
        enable_random_walk=False,  # we refresh ourselves, on our schedule, with timeouts
        validator=validator,
        validator_changed=True,
        protocol_prefix=TProtocol("/dolphin"),
        strict_validation=True,
    )
    _guard_inbound_streams(kad, idle=stream_idle, total=inbound_streams, per_peer=streams_per_peer)
    return kad


class _SilenceDeadline:
    """An inbound DHT stream whose reads fail after `idle` seconds without a byte (py-libp2p's handler then
    resets it); everything else is the stream's own."""

    def __init__(self, stream, idle: float) -> None:
        self._stream = stream
        self._idle = idle

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        with trio.fail_after(self._idle):
            return await self._stream.read(n)


def _guard_inbound_streams(kad: KadDHT, *, idle: float, total: int, per_peer: int) -> None:
    """Keep a server's DHT answering whatever its clients do.

    py-libp2p 0.8.1 serves at most 12 inbound DHT streams at once (more are reset) and serves each until
    the client closes it, with no deadline. A lookup abandoned while a server was answering (any lookup
    cut short by its timeout on a busy or distant network) never closes its stream: the server holds that
    slot for as long as the connection lives, and after a dozen such the server refuses every DHT stream,
    so nobody finds anything through it (a relay that is everyone's bootstrap peer: the whole network).
    A peer could do the same on purpose with a dozen silent streams. Here a stream that stays silent for
    `idle` seconds is reset, one peer holds at most `per_peer` streams at once (more are reset), and the
    server takes `total` at once.
    """
    kad._inbound_limiter = trio.CapacityLimiter(total)
    serve = kad.handle_stream
    held: dict[ID, int] = {}

    async def guarded(stream) -> None:
        peer = stream.muxed_conn.peer_id
        if held.get(peer, 0) >= per_peer:
            logger.debug("%s holds %d DHT streams already; resetting another", peer, per_peer)
            with trio.move_on_after(1):
                await stream.reset()
            return
        held[peer] = held.get(peer, 0) + 1
        try:
            await serve(cast(INetStream, _SilenceDeadline(stream, idle)))  # a stand-in: reads bounded
        finally:
            held[peer] -= 1
            if not held[peer]:
                del held[peer]

    kad.handle_stream = guarded  # type: ignore[method-assign]  # switch_mode registers this attribute
    if kad.mode is DHTMode.SERVER:
        kad.host.set_stream_handler(TProtocol(KAD_PROTOCOL), guarded)


class Dht:
    """The DHT facade: announce this peer in a pool, find a pool's members, bootstrap."""

    def __init__(self, kad: KadDHT, host, query_timeout: float) -> None:
        self._kad = kad
        self._host = host
        self._timeout = query_timeout
        # Called with the servers asked when a lookup found nobody; True when it mended something (p2p.host
        # sets it: dead connections forgotten, bootstrap peers dialled again), and the lookup is then tried
        # once more. py-libp2p keeps a dead connection listed, and its provider query answers a failed
        # stream as it does "no providers": without this every lookup through it finds nobody, for good.
        self.recover: Callable[[list[ID]], Awaitable[bool]] | None = None

    @property
    def mode(self) -> str:
        """ "server" or "client"."""
        return self._kad.mode.value

    def routing_table_size(self) -> int:
        return self._kad.get_routing_table_size()

    def inbound_streams(self) -> int:
        """The DHT streams other peers hold with this server now (`Limits.inbound_streams_per_protocol` at
        most)."""
        return int(self._kad._inbound_limiter.borrowed_tokens)

    async def set_server_mode(self, server: bool) -> None:
        """Switch between answering DHT queries (reachable peers) and only asking them (light clients)."""
        await self._kad.switch_mode(DHTMode.SERVER if server else DHTMode.CLIENT)

    async def add_peer(self, peer_id: str) -> None:
        """Put a connected peer into the routing table (used after dialling bootstrap peers)."""
        await self._kad.add_peer(ID.from_base58(peer_id))

    async def refresh(self) -> int:
        """A lookup of our own id, which fills the routing table (kad-dht spec, "Bootstrap process")."""
        with trio.move_on_after(self._timeout):
            await self._kad.peer_routing.find_closest_peers_network(self._host.get_id().to_bytes())
        return self.routing_table_size()

    async def find_peer(self, peer_id: str) -> list[str]:
        """Addresses of `peer_id` found by a kad-dht FIND_NODE walk; [] when not found in time."""
        info = cast(PeerInfo | None, await self._query(self._kad.find_peer(ID.from_base58(peer_id))))
        return [str(addr) for addr in info.addrs] if info is not None else []

    async def put_record(self, manifest_hash: bytes, addrs: list[str], ttl_seconds: int) -> PoolRecord:
        """Sign and store our pool record for `manifest_hash` and announce us as a member.

        `addrs` are the addresses others should dial (relay circuit addresses for unreachable peers).
        Raises RecordError for an invalid record; network failures only reduce how many servers hold it.
        """
        record = sign_pool_record(self._host.get_private_key(), addrs, manifest_hash, ttl_seconds)
        key = pool_record_key(manifest_hash, record.peer_id)
        with trio.move_on_after(self._timeout):
            await self._kad.put_value(key, record.raw)
        provider_key = pool_provider_key(manifest_hash)
        if not await self._provide(provider_key):
            # Nobody took the announcement: mend dead connections to the servers it was meant for (see
            # `recover`) and announce once more, rather than stay unlisted until the next renewal.
            servers = list(self._kad.routing_table.find_local_closest_peers(provider_key, 20))
            if self.recover is not None and await self.recover(servers):
                await self._provide(provider_key)
        return record

    async def _provide(self, provider_key: bytes) -> bool:
        """Announce us as a provider of `provider_key`; whether a server took it in time."""
        with trio.move_on_after(self._timeout):
            return await self._kad.provider_store.provide(provider_key)
        return False

    async def serve_record(
        self,
        manifest_hash: bytes,
        addrs: Callable[[], list[str]],
        ttl_seconds: int,
        *,
        task_status: trio.TaskStatus[PoolRecord] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep our pool record for `manifest_hash` in the DHT until cancelled.

        The record is re-signed with the then-current `addrs()` and stored again every third of its
        lifetime, so it never lapses while we serve and disappears within `ttl_seconds` once we stop.
        `task_status.started` receives the first record (use with `nursery.start`).
        """
        record = await self.put_record(manifest_hash, addrs(), ttl_seconds)
        task_status.started(record)
        while True:
            await trio.sleep(max(1.0, ttl_seconds / 3))
            try:
                await self.put_record(manifest_hash, addrs(), ttl_seconds)
            except RecordError as error:  # e.g. no address to announce right now: try again next round
                logger.warning("could not renew the pool record: %s", error)

    async def get_records(
        self,
        manifest_hash: bytes,
        *,
        limit: int = MAX_POOL_MEMBERS_PER_LOOKUP,
        quick: bool = False,
        on_member: Callable[[str, list[str]], None] | None = None,
    ) -> list[PoolRecord]:
        """The verified, unexpired records of a pool's members (ours included), sorted by peer id.

        `quick`: when the routing table's closest servers name members, take those without waiting for
        the network walk (a cold client that needs any member now; far away, a walk costs several
        dials and queries in a row). Dialable addresses from the records are added to the peerstore, so
        `open_stream` can reach them. `on_member(peer_id, addrs)` hears of each other member once the
        provider query has found it, before its record is fetched, with the full multiaddrs its provider
        entry names (hearsay, unsigned: a dial through them proves the peer id, nothing more), so that a
        caller can dial it while the record is on its way, instead of after.
        """
        members, servers, silent = await self._find_members(manifest_hash, limit, quick=quick)
        if not members and self.recover is not None and await self.recover(silent):
            members, servers, silent = await self._find_members(manifest_hash, limit, quick=quick)
        if on_member is not None:
            for peer_id, addrs in members.items():
                if peer_id != self._host.get_id() and addrs:
                    on_member(peer_id.to_base58(), [_full_addr(a, peer_id) for a in addrs])
        records: dict[str, PoolRecord] = {}
        limiter = trio.CapacityLimiter(8)

        async def fetch(peer_id: ID) -> None:
            async with limiter:
                key = pool_record_key(manifest_hash, peer_id.to_base58())
                # A connected member holds its own record: one GET_VALUE to it is the cheapest source.
                # Otherwise the servers that just named it a provider, all at once (its record was stored
                # on the servers closest to the pool, the ones a provider query asks); a DHT walk only
                # when none has it (dialling the member here could hit stale addresses).
                value = None
                if peer_id == self._host.get_id() or peer_id in self._host.get_connected_peers():
                    value = await self._query(self._kad.value_store._get_from_peer(peer_id, key.encode()))
                if not isinstance(value, bytes) and servers:
                    value = await self._first_value(servers, key)
                if not isinstance(value, bytes):
                    # quorum=1: the record is signed, one verified copy is enough, and py-libp2p then
                    # stops waiting for slower (or frozen) peers as soon as one answers.
                    value = await self._query(self._kad.get_value(key, quorum=1))
                if not isinstance(value, bytes):
                    return
                try:
                    record = decode_pool_record(value)
                except RecordError as error:
                    logger.debug("dropping record for %s: %s", key, error)
                    return
                if pool_record_key(record.manifest_hash, record.peer_id) == key:
                    records[record.peer_id] = record

        async with trio.open_nursery() as nursery:
            for peer_id in members:
                nursery.start_soon(fetch, peer_id)
        for record in records.values():
            self._remember_addrs(record)
        return [records[peer] for peer in sorted(records)]

    async def _query(self, lookup: Awaitable[object]) -> object:
        """Await one py-libp2p lookup under the query deadline; None on timeout or any network error."""
        with trio.move_on_after(self._timeout):
            try:
                return await lookup
            except Exception as error:  # py-libp2p lookups raise assorted network errors
                logger.debug("DHT lookup failed: %r", error)
        return None

    async def _first_value(self, servers: list[ID], key: str) -> bytes | None:
        """The first valid value for `key` that any of `servers` returns (all asked at once), or None."""
        found: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def ask(server: ID) -> None:
                value = await self._query(self._kad.value_store._get_from_peer(server, key.encode()))
                if isinstance(value, bytes) and not found:
                    try:
                        decode_pool_record(value)
                    except RecordError as error:
                        logger.debug("server %s returned a bad record for %s: %s", server, key, error)
                        return
                    found.append(value)
                    nursery.cancel_scope.cancel()

            for server in servers:
                nursery.start_soon(ask, server)
        return found[0] if found else None

    async def _find_members(
        self, manifest_hash: bytes, limit: int, *, quick: bool
    ) -> tuple[dict[ID, list[multiaddr.Multiaddr]], list[ID], list[ID]]:
        """The pool's members (providers, with the addresses their provider entries name), the servers
        that named at least one of them, and those that named none (or failed: py-libp2p does not tell
        the two apart)."""
        # py-libp2p's find_providers returns the local entries alone whenever there are any, so a pool
        # member would only ever find itself; ask the closest servers directly instead.
        key = pool_provider_key(manifest_hash)
        store = self._kad.provider_store
        found: dict[ID, list[multiaddr.Multiaddr]] = {
            info.peer_id: info.addrs for info in store.get_providers(key)
        }
        answered: list[ID] = []
        silent: list[ID] = []
        asked: set[ID] = {self._host.get_id()}

        async def ask(peer_id: ID) -> None:
            with trio.move_on_after(self._timeout):
                try:
                    providers, _closer = await store._get_providers_from_peer_with_closers(peer_id, key)
                except Exception as error:  # a dead or hostile server: skip it
                    logger.debug("provider query to %s failed: %r", peer_id, error)
                    silent.append(peer_id)
                    return
                (answered if providers else silent).append(peer_id)
                for info in providers:
                    if not found.get(info.peer_id):
                        found[info.peer_id] = info.addrs

        def ask_all(peers: list[ID], nursery: trio.Nursery) -> None:
            for peer_id in peers:
                if peer_id not in asked:
                    asked.add(peer_id)
                    nursery.start_soon(ask, peer_id)

        # The routing table's own closest peers are asked at once, while a network walk looks for more;
        # those it finds in time are asked too (a frozen peer can stall the walk, never the answer).
        async def walk(nursery: trio.Nursery) -> None:
            with trio.move_on_after(self._timeout / 2):
                ask_all(await self._kad.peer_routing.find_closest_peers_network(key), nursery)

        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as local:
                ask_all(list(self._kad.routing_table.find_local_closest_peers(key, 20)), local)
                nursery.start_soon(walk, nursery)
            if quick and found:
                nursery.cancel_scope.cancel()
        return dict(list(found.items())[:limit]), answered, silent

    def _remember_addrs(self, record: PoolRecord) -> None:
        peer_id = ID.from_base58(record.peer_id)
        if peer_id == self._host.get_id():
            return
        # The record is signed by the peer itself, so its addresses replace whatever hearsay (provider
        # entries, FIND_NODE answers) the peerstore collected.
        addrs = [multiaddr.Multiaddr(a) for a in record.addrs]
        ttl = max(1, record.expires_at - int(time.time()))
        peerstore = self._host.get_peerstore()
        peerstore.clear_addrs(peer_id)
        peerstore.add_addrs(peer_id, addrs, ttl)
        self._host.get_network().unblock_peer(peer_id)


def _full_addr(addr: multiaddr.Multiaddr, peer_id: ID) -> str:
    """`addr` ending in `/p2p/<peer_id>`, as `DolphinHost.connect` takes it (a circuit address included)."""
    text, suffix = str(addr), f"/p2p/{peer_id.to_base58()}"
    return text if text.endswith(suffix) else text + suffix


def _check_manifest_hash(manifest_hash: bytes) -> None:
    if not isinstance(manifest_hash, bytes) or len(manifest_hash) != MANIFEST_HASH_SIZE:
        raise RecordError(f"a manifest hash is {MANIFEST_HASH_SIZE} bytes")
