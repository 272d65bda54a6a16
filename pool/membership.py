"""Who serves a model right now: the pool view built from heartbeats on the model's gossip topic.

Every heartbeat is a signed envelope checked before GossipSub forwards it (p2p.validators runs the shared
envelope checks), so a peer publishing forgeries is scored down by the router, not just ignored:

- REJECT: not a PoolHeartbeat envelope, bad signature, signer is not the gossip origin or the heartbeat's
  peer id, wrong model for this topic, or an operator binding not signed by the operator it names
  (EIP-712 against the Bonding contract's domain).
- A heartbeat without a binding is from an *unregistered* node (no operator registered it on chain): it
  is accepted and its member marked `registered=False`; it earns nothing, and a client may leave it out.
  Without a chain there is no Bonding domain to check a binding against (`binding_domain` None): the
  binding is then an unchecked claim, which only a chain can confirm (`pool.chainfacts`).
- IGNORE: outside the envelope's validity window, a replayed envelope, or not newer than the last one
  seen from that peer (a reordering is harmless but not news).
- ACCEPT: the member is added or refreshed; members not heard from within `max_age_ms` drop out.

"Newer" is (`started_at_ms`, `seq`): a restarted node counts from seq 1 again under a new start time and a
new encryption key, and its first heartbeat replaces the old member at once (ordering by seq alone kept
clients sealing to the dead key until the old seq was passed). Both are the node's own signed claims, so
only the node itself can move its entry forward.

A peer that has just dialled a member need not wait for its next heartbeat: `fetch_heartbeat` asks the
member for its latest one (HEARTBEAT_PROTOCOL) and puts it through the same validator, as gossip from
that member; the checks above are what make it a member, not the path it came by.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import trio

from p2p import (
    DolphinHost,
    GossipMessage,
    P2PError,
    StreamOpener,
    Validator,
    Verdict,
    signed_message_validator,
)
from pool.contact import NodeContact
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.eth import TypedDomain
from protocols.ids import HEARTBEAT_PROTOCOL, pool_topic
from protocols.keys import peer_id_to_text
from protocols.messages import HeartbeatRequest, PoolHeartbeat, eth_signer
from protocols.schema import encode_message

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_MS = 30_000


@dataclass(frozen=True)
class Member:
    """A node as its latest valid heartbeat describes it."""

    contact: NodeContact
    operator: bytes | None  # the operator wallet that bound the node; None for an unregistered node
    capacity: int
    load: int
    queued: int
    started_at_ms: int
    seq: int
    heard_at_ms: int
    model_name: str = ""  # the manifest name the node claims (only the model id is authoritative)

    @property
    def registered(self) -> bool:
        return self.operator is not None

    @property
    def spare(self) -> int:
        return self.capacity - self.load - self.queued


class PoolView:
    """Members of one model's pool; `validate` is the GossipSub validator for the pool topic."""

    def __init__(
        self, model: bytes, binding_domain: TypedDomain | None, *, max_age_ms: int = DEFAULT_MAX_AGE_MS
    ):
        self.model = model
        self.binding_domain = binding_domain
        self.max_age_ms = max_age_ms
        self._members: dict[str, Member] = {}
        self.validate = signed_message_validator(PoolHeartbeat, authorise=self._admit, on_accept=self._record)

    def _admit(self, signed: envelope.Signed[PoolHeartbeat]) -> Verdict:
        """The pool-specific checks after the shared envelope checks (no state changes: see `_record`)."""
        heartbeat = signed.message
        if heartbeat.binding is not None and self.binding_domain is not None:  # no binding: unregistered
            eth_signer(heartbeat.binding, self.binding_domain)  # SignatureError: rejected
        if signed.peer_id != heartbeat.peer_id or heartbeat.model != self.model:
            return Verdict.REJECT
        known = self._members.get(peer_id_to_text(heartbeat.peer_id))
        if known is not None and (heartbeat.started_at_ms, heartbeat.seq) <= (known.started_at_ms, known.seq):
            return Verdict.IGNORE
        return Verdict.ACCEPT

    def _record(self, signed: envelope.Signed[PoolHeartbeat]) -> None:
        heartbeat = signed.message
        peer_id = peer_id_to_text(heartbeat.peer_id)
        self._members[peer_id] = Member(
            contact=NodeContact(
                peer_id=peer_id,
                node_key=signed.signer,
                encryption_key=heartbeat.encryption_key,
                model=heartbeat.model,
            ),
            # `_admit` checked that this wallet signed the binding (when there is a domain to check against)
            operator=None if heartbeat.binding is None else heartbeat.binding.operator,
            capacity=heartbeat.capacity,
            load=heartbeat.load,
            queued=heartbeat.queued,
            started_at_ms=heartbeat.started_at_ms,
            seq=heartbeat.seq,
            heard_at_ms=time.time_ns() // 1_000_000,
            model_name=heartbeat.model_name,
        )

    def members(self, now_ms: int | None = None) -> list[Member]:
        """Live members, most spare capacity first (ties by peer id, so the order is stable)."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        for peer_id in [p for p, m in self._members.items() if now_ms - m.heard_at_ms > self.max_age_ms]:
            del self._members[peer_id]
        return sorted(self._members.values(), key=lambda m: (-m.spare, m.contact.peer_id))


MAX_HEARTBEAT_BYTES = 8 * 1024  # an envelope is well under 1 KiB; more is not a heartbeat


async def fetch_heartbeat(host: StreamOpener, peer_id: str, model: bytes, hear: Validator) -> Verdict:
    """Ask `peer_id` for its latest heartbeat for `model` and hand it to `hear` (the pool topic's
    validator) as gossip from that peer; returns the verdict. Raises P2PError (ProtocolNotSupported from
    a node that predates HEARTBEAT_PROTOCOL): the caller then waits for gossip, as before."""
    stream = await host.open_stream(peer_id, HEARTBEAT_PROTOCOL, optimistic=True)
    try:
        await stream.write_message(encode_message(HeartbeatRequest(model=model)))
        data = await stream.read_message(MAX_HEARTBEAT_BYTES)
    finally:
        await stream.close()
    return hear(
        GossipMessage(topic=pool_topic(model), data=data, origin=peer_id, forwarder=peer_id, seqno=b"")
    )


HEARTBEAT_FETCH_SECONDS = 5.0  # a member's answer to HEARTBEAT_PROTOCOL, or this many round trips to it:
HEARTBEAT_FETCH_ROUND_TRIPS = 2  # the stream's proposal rides with the request, so one is the norm


async def ask_for_heartbeat(host: DolphinHost, peer_id: str, model: bytes, hear: Validator) -> None:
    """`fetch_heartbeat` under its own deadline; a member that does not answer is left to gossip (logged).
    Users' clients ask each member they have dialled and not heard yet (pool.watch), and validators'
    challenge hosts each node before their first challenge to it, as those clients do."""
    # A member that takes the stream and never answers holds its caller up no longer than this.
    deadline = host.deadline(HEARTBEAT_FETCH_SECONDS, HEARTBEAT_FETCH_ROUND_TRIPS, peer_id)
    try:
        with trio.fail_after(deadline):
            verdict = await fetch_heartbeat(host, peer_id, model, hear)
    except trio.TooSlowError:
        log.debug("pool member %s sent no heartbeat within %.0f s (gossip will)", peer_id, deadline)
        return
    except (P2PError, ProtocolError) as exc:
        log.debug("pool member %s gave no heartbeat when asked (gossip will): %s", peer_id, exc)
        return
    if verdict is Verdict.REJECT:
        log.info("pool member %s answered with a heartbeat that fails the pool's checks", peer_id)


async def find_member(host: DolphinHost, view: PoolView, peer_id: str, *, timeout: float = 60.0) -> Member:
    """Look `peer_id` up in the DHT, connect, and wait for its heartbeat in `view` (whose validator must be
    subscribed to the pool topic on `host`); returns the member. trio.TooSlowError after `timeout` s."""
    with trio.fail_after(timeout):
        while True:
            with contextlib.suppress(P2PError):  # the DHT or the dial is not ready yet: next round
                for record in await host.dht.get_records(view.model):
                    if record.peer_id == peer_id and peer_id not in host.connected_peers():
                        await host.connect(record.addrs[0])
            for _ in range(20):
                for member in view.members():
                    if member.contact.peer_id == peer_id:
                        return member
                await trio.sleep(0.1)
