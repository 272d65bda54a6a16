"""GossipSub with deliberate parameters, spec-correct scoring and pluggable per-topic validators.

What py-libp2p 0.8.1 gets wrong by default (DESIGN.md), and what this module does about it:
- heartbeat every 120 s, and "adaptive gossip" stretches it to 30-60 s: we run ~1 s with adaptation off;
- a 10 msg/s per-topic spam limit silently drops even our own publishes: our own are never limited,
  remote peers get a limit well above the rates the protocols here use, and exceeding it costs score;
- P4 (invalid messages) is subtracted with a positive weight, so a spec-conforming negative weight would
  reward invalid messages: `_SpecScorer` computes P4 as the spec says, weight x count² with weight < 0;
- the mesh heartbeat never drops peers with a negative score: `_DolphinGossipSub` does
  (gossipsub v1.1 spec, "Heartbeat": "drop all peers with negative score");
- a subscription buffers 32 messages and silently drops the rest when its reader is busy: we buffer
  `SUBSCRIPTION_BUFFER` (py-libp2p reads the module constant at subscribe time; set once, process-wide);
- each peer's outbound queue holds 32 RPCs and drops the rest, so 40 quick publishes lose 8: our
  queues hold `OUTBOUND_QUEUE_RPCS` (a frozen peer still cannot make us buffer without bound);
- no flood publishing: a publish made before the mesh forms reaches nobody; ours flood-publish
  (gossipsub v1.1 spec) to every subscribed peer whose score is above the publish threshold;
- validators can only say yes/no: ours return ACCEPT/REJECT/IGNORE (gossipsub v1.1 "Extended
  Validators"); IGNORE drops the message without penalising whoever forwarded it.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import math
from collections.abc import Callable

import trio
from libp2p.peer.id import ID
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import PeerScorer, ScoreParams, TopicScoreParams

from p2p.errors import GossipError

logger = logging.getLogger(__name__)

GOSSIP_PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID)
# Per remote peer and topic. Pool heartbeats are ~1 per node per few seconds; 50/s is far above honest use.
REMOTE_MESSAGES_PER_TOPIC_PER_SECOND = 50.0
INVALID_MESSAGE_WEIGHT = -20.0  # P4 weight, negative as in the spec
INVALID_MESSAGE_DECAY = 0.995  # per ~1 s heartbeat: halves in about two minutes
GOSSIP_THRESHOLD = -20.0
PUBLISH_THRESHOLD = -40.0  # below this, a peer's messages are dropped unvalidated
GRAYLIST_THRESHOLD = -80.0
SUBSCRIPTION_BUFFER = 4096
OUTBOUND_QUEUE_RPCS = 1024

pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = SUBSCRIPTION_BUFFER


class Verdict(enum.Enum):
    """A validator's decision (gossipsub v1.1 extended validators)."""

    ACCEPT = "accept"  # deliver and forward
    REJECT = "reject"  # drop, and penalise the forwarding peer (P4)
    IGNORE = "ignore"  # drop quietly (stale, duplicate, not for us) with no penalty


@dataclasses.dataclass(frozen=True)
class GossipMessage:
    """A message as a validator and a subscriber see it. `origin` signed it; `forwarder` sent it to us."""

    topic: str
    data: bytes
    origin: str
    forwarder: str
    seqno: bytes


Validator = Callable[[GossipMessage], Verdict]


def accept_all(_message: GossipMessage) -> Verdict:
    """A validator for topics whose payload checks live elsewhere (tests, benchmarks)."""
    return Verdict.ACCEPT


class _SpecScorer(PeerScorer):
    """PeerScorer with P4 as the gossipsub v1.1 spec defines it, plus a way to exempt IGNOREd messages."""

    def __init__(self, params: ScoreParams) -> None:
        super().__init__(params)
        self._ignore_credits: collections.Counter[tuple[ID, str]] = collections.Counter()

    def forgive_next_invalid(self, peer: ID, topic: str) -> None:
        """The next invalid-message count for (peer, topic) is an IGNORE verdict, not a REJECT."""
        self._ignore_credits[(peer, topic)] += 1

    def on_invalid_message(self, peer: ID, topic: str) -> None:
        key = (peer, topic)
        if self._ignore_credits[key]:
            self._ignore_credits[key] -= 1
            if not self._ignore_credits[key]:
                del self._ignore_credits[key]
            return
        super().on_invalid_message(peer, topic)

    def topic_score(self, peer: ID, topic: str) -> float:
        params = self.params
        score = params.p1_time_in_mesh.weight * min(
            self.time_in_mesh[peer][topic], params.p1_time_in_mesh.cap
        )
        score += params.p2_first_message_deliveries.weight * min(
            self.first_message_deliveries[peer][topic], params.p2_first_message_deliveries.cap
        )
        score += params.p3_mesh_message_deliveries.weight * min(
            self.mesh_message_deliveries[peer][topic], params.p3_mesh_message_deliveries.cap
        )
        # Spec: P4 = (invalid message deliveries)², with a negative weight.
        invalid = min(self.invalid_messages[peer][topic], params.p4_invalid_messages.cap)
        return score + params.p4_invalid_messages.weight * invalid * invalid


class _DolphinGossipSub(GossipSub):
    """GossipSub that never rate-limits our own publishes and prunes negative-score mesh peers."""

    def _check_spam_protection(self, peer_id: ID, msg: rpc_pb2.Message) -> bool:
        if self.pubsub is not None and peer_id == self.pubsub.my_id:
            return True
        return super()._check_spam_protection(peer_id, msg)

    def mesh_heartbeat(
        self,
    ) -> tuple[collections.defaultdict[ID, list[str]], collections.defaultdict[ID, list[str]]]:
        negative: dict[ID, list[str]] = collections.defaultdict(list)
        if self.scorer is not None:
            for topic, peers in self.mesh.items():
                for peer in list(peers):
                    if self.scorer.score(peer, [topic]) < 0:
                        peers.discard(peer)
                        self.scorer.on_leave_mesh(peer, topic)
                        self._add_back_off(peer, topic, False)  # spec: pruned peers back off
                        negative[peer].append(topic)
        to_graft, to_prune = super().mesh_heartbeat()
        for peer, topics in negative.items():
            to_prune[peer].extend(topics)
            for topic in topics:  # never re-graft a peer we have just pruned for its score
                if topic in to_graft.get(peer, []):
                    to_graft[peer].remove(topic)
        return to_graft, to_prune

    def _get_peers_to_send(self, topic_ids, msg_forwarder: ID, origin: ID, msg_id: bytes | None = None):
        # Spec v1.1 "Flood Publishing": our own messages go to every subscribed peer above the publish
        # threshold, not just the mesh, so a publish right after joining (empty mesh) is not lost.
        peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        if self.pubsub is not None and origin == self.pubsub.my_id:
            for topic in topic_ids:
                for peer in self.pubsub.peer_topics.get(topic, ()):
                    if peer in self.peer_protocol and (
                        self.scorer is None or self.scorer.score(peer, [topic]) >= PUBLISH_THRESHOLD
                    ):
                        peers.add(peer)
            peers.discard(origin)
        yield from peers

    async def handle_graft(self, graft_msg: rpc_pb2.ControlGraft, sender_peer_id: ID) -> None:
        # Spec ("GRAFT"): a GRAFT from a peer with a negative score is refused with a PRUNE.
        topic = graft_msg.topicID
        if self.scorer is not None and topic in self.mesh and self.scorer.score(sender_peer_id, [topic]) < 0:
            self._add_back_off(sender_peer_id, topic, False)
            await self.emit_prune(topic, sender_peer_id, False, False)
            return
        await super().handle_graft(graft_msg, sender_peer_id)


class _RoomyPeerQueues(dict):
    """Pubsub's per-peer queue map; widens each RpcQueue as py-libp2p creates it (it has no parameter)."""

    def __setitem__(self, peer: ID, queue) -> None:
        queue._queue.max_size = OUTBOUND_QUEUE_RPCS
        super().__setitem__(peer, queue)


class _NoValidationCache:
    """Stands in for py-libp2p's ValidationCache, which replays a REJECT for an IGNOREd duplicate."""

    def get(self, _msg_id: bytes) -> None:
        return None

    def put(self, _msg_id: bytes, _result: object) -> None:
        return None

    def clear_expired(self) -> None:
        return None


def score_params() -> ScoreParams:
    """Dolphin's peer-score parameters: invalid messages are what we punish; colocation is not scored
    (many honest nodes share a NAT or a data centre)."""
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(
            weight=INVALID_MESSAGE_WEIGHT, cap=1000.0, decay=INVALID_MESSAGE_DECAY
        ),
        p5_behavior_penalty_weight=1.0,
        p5_behavior_penalty_decay=0.9,
        p5_behavior_penalty_threshold=10.0,
        gossip_threshold=GOSSIP_THRESHOLD,
        publish_threshold=PUBLISH_THRESHOLD,
        graylist_threshold=GRAYLIST_THRESHOLD,
        accept_px_threshold=math.inf,  # no peer exchange: peers come from the DHT
    )


def build_router(heartbeat_seconds: float) -> GossipSub:
    """A GossipSub router with every parameter chosen here rather than inherited."""
    router = _DolphinGossipSub(
        protocols=list(GOSSIP_PROTOCOLS),
        degree=6,
        degree_low=4,
        degree_high=12,
        time_to_live=60,
        gossip_window=3,
        gossip_history=5,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=heartbeat_seconds,  # type: ignore[arg-type]  # trio.sleep takes floats
        do_px=False,
        prune_back_off=60,
        adaptive_gossip_enabled=False,
        spam_protection_enabled=True,
        max_messages_per_topic_per_second=REMOTE_MESSAGES_PER_TOPIC_PER_SECOND,
        eclipse_protection_enabled=False,  # it wants 3 distinct IPs in a mesh; pools on one LAN are legal
    )
    router.scorer = _SpecScorer(score_params())
    return router


def build_pubsub(host, router: GossipSub, max_payload: int) -> Pubsub:
    """Pubsub over `router`: strict signing (every message signed by its origin), bounded RPC size."""
    pubsub = Pubsub(
        host,
        router,
        strict_signing=True,
        max_inbound_rpc_size=max_payload + 16 * 1024,
        validation_timeout=2.0,
    )
    pubsub.validation_cache = _NoValidationCache()  # type: ignore[assignment]  # its stand-in, see the class
    pubsub.peer_queues = _RoomyPeerQueues()
    return pubsub


class Subscription:
    """Validated messages of one topic, in arrival order."""

    def __init__(self, topic: str, raw, forwarders: dict[bytes, str]) -> None:
        self.topic = topic
        self._raw = raw
        self._forwarders = forwarders

    async def receive(self, *, timeout: float | None = None) -> GossipMessage:
        """The next message; GossipError if none arrives within `timeout` seconds."""
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                raw = await self._raw.get()
        except trio.TooSlowError as error:
            raise GossipError(f"no message on {self.topic} within {timeout} s") from error
        return _to_message(self.topic, raw, self._forwarders.pop(raw.from_id + raw.seqno, ""))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> GossipMessage:
        return await self.receive()


class Gossip:
    """The gossip facade the rest of the project uses: subscribe with a validator, publish bytes."""

    def __init__(self, pubsub: Pubsub, router: GossipSub, max_payload: int) -> None:
        self._pubsub = pubsub
        self._router = router
        self._max_payload = max_payload
        self._validators: dict[str, Validator] = {}
        # Who forwarded each accepted message, so subscribers can see it; bounded by subscriber reads.
        self._forwarders: dict[bytes, str] = {}

    async def subscribe(self, topic: str, validator: Validator) -> Subscription:
        """Join `topic`; every incoming message passes `validator` before anyone sees or forwards it.

        A validator that raises counts as REJECT (and is logged): a bug in a schema check must not let
        malformed messages through nor crash the host.
        """
        if topic in self._validators:
            raise GossipError(f"already subscribed to {topic}")
        self._validators[topic] = validator
        self._pubsub.set_topic_validator(topic, self._make_validator(topic, validator), False)
        raw = await self._pubsub.subscribe(topic)
        return Subscription(topic, raw, self._forwarders)

    async def publish(self, topic: str, data: bytes) -> None:
        """Sign and send `data` to the topic's mesh. Publishing does not require being subscribed."""
        if len(data) > self._max_payload:
            raise GossipError(f"{len(data)}-byte payload over the {self._max_payload}-byte gossip limit")
        try:
            await self._pubsub.publish(topic, data)
        except Exception as error:  # py-libp2p raises bare exceptions from its publish path
            raise GossipError(f"publish on {topic} failed: {error!r}") from error

    def peer_score(self, peer_id: str, topic: str) -> float:
        """The router's current score of a peer on a topic (negative: misbehaving)."""
        scorer = self._router.scorer
        return scorer.score(ID.from_base58(peer_id), [topic]) if scorer is not None else 0.0

    def mesh_peers(self, topic: str) -> list[str]:
        """Peers in our mesh for `topic` (those we forward full messages to)."""
        return sorted(peer.to_base58() for peer in self._router.mesh.get(topic, ()))

    def topic_peers(self, topic: str) -> list[str]:
        """Connected peers known to subscribe to `topic`."""
        return sorted(peer.to_base58() for peer in self._pubsub.peer_topics.get(topic, ()))

    def _make_validator(self, topic: str, validator: Validator) -> Callable[[ID, rpc_pb2.Message], bool]:
        def run(forwarder: ID, raw: rpc_pb2.Message) -> bool:
            if raw.from_id == self._pubsub.my_id.to_bytes():
                return True  # our own publish; already checked by its caller
            message = _to_message(topic, raw, forwarder.to_base58())
            try:
                verdict = validator(message)
            except Exception:
                logger.exception("validator for %s raised; treating the message as invalid", topic)
                verdict = Verdict.REJECT
            if verdict is Verdict.ACCEPT:
                if len(self._forwarders) < 10_000:
                    self._forwarders[raw.from_id + raw.seqno] = message.forwarder
                return True
            if verdict is Verdict.IGNORE and isinstance(self._router.scorer, _SpecScorer):
                self._router.scorer.forgive_next_invalid(forwarder, topic)
            return False

        return run


def _to_message(topic: str, raw: rpc_pb2.Message, forwarder: str) -> GossipMessage:
    try:
        origin = ID(raw.from_id).to_base58()
    except Exception:  # a malformed from_id never passes strict signing; keep the type total anyway
        origin = ""
    return GossipMessage(
        topic=topic, data=bytes(raw.data), origin=origin, forwarder=forwarder, seqno=raw.seqno
    )
