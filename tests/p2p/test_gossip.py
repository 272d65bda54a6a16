"""Gossip: deliberate parameters, spec-correct P4, verdicts, and scoring that prunes invalid senders."""

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from p2p.config import Reachability
from p2p.errors import GossipError
from p2p.gossip import (
    INVALID_MESSAGE_WEIGHT,
    PUBLISH_THRESHOLD,
    GossipMessage,
    Verdict,
    _SpecScorer,
    accept_all,
    build_router,
    score_params,
)
from p2p.testing import open_host_group, open_swarm, prefix_validator, wait_until

TOPIC = "/dolphin/test/gossip/1"


def _peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


@pytest.mark.unit
def test_invalid_messages_lower_the_score_quadratically():
    scorer = _SpecScorer(score_params())
    peer = _peer()
    assert scorer.score(peer, [TOPIC]) == 0
    scorer.on_invalid_message(peer, TOPIC)
    assert scorer.score(peer, [TOPIC]) == INVALID_MESSAGE_WEIGHT < 0
    scorer.on_invalid_message(peer, TOPIC)
    assert scorer.score(peer, [TOPIC]) == 4 * INVALID_MESSAGE_WEIGHT
    assert not scorer.allow_publish(peer, [TOPIC])  # below the publish threshold: its messages are dropped
    assert 4 * INVALID_MESSAGE_WEIGHT < PUBLISH_THRESHOLD


@pytest.mark.unit
def test_ignored_messages_cost_nothing():
    scorer = _SpecScorer(score_params())
    peer = _peer()
    scorer.forgive_next_invalid(peer, TOPIC)
    scorer.on_invalid_message(peer, TOPIC)
    assert scorer.score(peer, [TOPIC]) == 0
    scorer.on_invalid_message(peer, TOPIC)  # the credit was for one message only
    assert scorer.score(peer, [TOPIC]) < 0


@pytest.mark.unit
def test_router_parameters_are_deliberate():
    router = build_router(1.0)
    assert router.heartbeat_interval == 1.0
    assert router.adaptive_gossip_enabled is False  # it would stretch the heartbeat to 30-60 s
    assert isinstance(router.scorer, _SpecScorer)


@pytest.mark.integration
@pytest.mark.trio
async def test_own_publishes_are_never_rate_limited_and_all_arrive(tmp_path):
    async with open_host_group(tmp_path, 2) as (publisher, subscriber):
        subscription = await subscriber.gossip.subscribe(TOPIC, accept_all)
        await wait_until(lambda: subscriber.peer_id in publisher.gossip.topic_peers(TOPIC), timeout=10)
        for index in range(40):  # 4x py-libp2p's default 10 msg/s limit, in well under a second
            await publisher.gossip.publish(TOPIC, b"m%d" % index)
        received = [await subscription.receive(timeout=10) for _ in range(40)]
        assert sorted(m.data for m in received) == sorted(b"m%d" % i for i in range(40))
        assert {m.origin for m in received} == {publisher.peer_id}


@pytest.mark.integration
@pytest.mark.trio
async def test_rejected_messages_score_the_sender_down_and_prune_it(tmp_path):
    verdicts: list[Verdict] = []

    def validator(message: GossipMessage) -> Verdict:
        verdict = {b"bad": Verdict.REJECT, b"old": Verdict.IGNORE}.get(message.data[:3], Verdict.ACCEPT)
        verdicts.append(verdict)
        return verdict

    async with open_host_group(tmp_path, 3) as (receiver, honest, flooder):
        subscription = await receiver.gossip.subscribe(TOPIC, validator)
        # An honest peer runs the same checks, so it never forwards the flood (and is not blamed for it).
        await honest.gossip.subscribe(TOPIC, prefix_validator(b"bad"))
        await flooder.gossip.subscribe(TOPIC, accept_all)
        await flooder.connect(receiver.listen_addrs()[0])
        await wait_until(lambda: flooder.peer_id in receiver.gossip.mesh_peers(TOPIC), timeout=10)

        await flooder.gossip.publish(TOPIC, b"old but harmless")
        await wait_until(lambda: Verdict.IGNORE in verdicts, timeout=10)
        assert receiver.gossip.peer_score(flooder.peer_id, TOPIC) == 0

        for index in range(20):
            await flooder.gossip.publish(TOPIC, b"bad %d" % index)
            await trio.sleep(0.02)
        await wait_until(
            lambda: receiver.gossip.peer_score(flooder.peer_id, TOPIC) < PUBLISH_THRESHOLD, timeout=10
        )
        await wait_until(lambda: flooder.peer_id not in receiver.gossip.mesh_peers(TOPIC), timeout=10)
        # Once below the publish threshold the flooder's messages are dropped before validation.
        rejected_before = verdicts.count(Verdict.REJECT)
        for index in range(10):
            await flooder.gossip.publish(TOPIC, b"bad again %d" % index)
        await honest.gossip.publish(TOPIC, b"good")
        message = await subscription.receive(timeout=10)
        assert message.data == b"good" and message.origin == honest.peer_id
        assert receiver.gossip.peer_score(honest.peer_id, TOPIC) >= 0
        assert verdicts.count(Verdict.REJECT) <= rejected_before + 1


@pytest.mark.integration
@pytest.mark.trio
async def test_a_raising_validator_counts_as_reject(tmp_path):
    def broken(message: GossipMessage) -> Verdict:
        raise RuntimeError("schema bug")

    async with open_host_group(tmp_path, 2) as (receiver, sender):
        await receiver.gossip.subscribe(TOPIC, broken)
        await wait_until(lambda: receiver.peer_id in sender.gossip.topic_peers(TOPIC), timeout=10)
        await sender.gossip.publish(TOPIC, b"anything")
        await wait_until(lambda: receiver.gossip.peer_score(sender.peer_id, TOPIC) < 0, timeout=10)


@pytest.mark.integration
@pytest.mark.trio
async def test_payload_limit_and_double_subscribe(tmp_path):
    async with open_host_group(tmp_path, 1) as (host,):
        with pytest.raises(GossipError, match="limit"):
            await host.gossip.publish(TOPIC, bytes(host.config.limits.max_gossip_payload + 1))
        await host.gossip.subscribe(TOPIC, accept_all)
        with pytest.raises(GossipError, match="already"):
            await host.gossip.subscribe(TOPIC, accept_all)


@pytest.mark.integration
@pytest.mark.trio
async def test_own_publish_floods_to_every_subscriber_beyond_the_mesh_degree(tmp_path):
    # Twelve subscribers, all connected to the publisher only: more than its mesh/fanout degree (6).
    async with open_swarm(tmp_path, 13, reachability=Reachability.PUBLIC) as (publisher, *subscribers):
        subscriptions = [await s.gossip.subscribe(TOPIC, accept_all) for s in subscribers]
        await wait_until(lambda: len(publisher.gossip.topic_peers(TOPIC)) == len(subscribers), timeout=20)
        await publisher.gossip.publish(TOPIC, b"to everyone")
        with trio.fail_after(10):
            for subscription in subscriptions:
                assert (await subscription.receive()).data == b"to everyone"
        # A healthy swarm penalises nobody (py-libp2p's GRAFT-flood check once did, after identify pushes).
        await trio.sleep(3)
        hosts = [publisher, *subscribers]
        assert min(a.gossip.peer_score(b.peer_id, TOPIC) for a in hosts for b in hosts if a is not b) >= 0


@pytest.mark.unit
@pytest.mark.trio
async def test_graft_from_a_negative_score_peer_is_refused():
    router = build_router(1.0)
    peer = _peer()
    router.mesh[TOPIC] = set()
    pruned = []

    async def emit_prune(topic, to_peer, do_px, is_unsubscribe):
        pruned.append((topic, to_peer))

    router.emit_prune = emit_prune
    router.scorer.on_invalid_message(peer, TOPIC)
    await router.handle_graft(rpc_pb2.ControlGraft(topicID=TOPIC), peer)
    assert peer not in router.mesh[TOPIC]
    assert pruned == [(TOPIC, peer)]
    assert router._check_back_off(peer, TOPIC)
