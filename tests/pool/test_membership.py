"""The pool view: heartbeats validated as GossipSub messages, over real hosts and hand-made forgeries."""

import dataclasses
import types

import pytest
import trio

from node.announce import Announcement, Announcer, HeartbeatServer, detect_hardware, heartbeat_envelope
from p2p import GossipMessage, P2PError, Verdict
from p2p.memory import open_memory_network
from p2p.testing import open_host_group, wait_until
from pool.membership import PoolView, ask_for_heartbeat, fetch_heartbeat
from pool.watch import MemberDialer, WatchSettings
from protocols import testing as pt
from protocols.errors import SchemaError
from protocols.eth import keccak256
from protocols.ids import HEARTBEAT_PROTOCOL, pool_topic
from protocols.keys import Identity, peer_id_from_public_key, peer_id_to_text
from protocols.messages import OperatorBinding, eth_sign

MODEL = pt.TEST_MODEL


def _announcement(node: Identity, operator_index: int = 1, signed_by: int | None = None) -> Announcement:
    operator = pt.eth_account(operator_index)
    signer = pt.eth_account(signed_by if signed_by is not None else operator_index)
    peer_id = peer_id_from_public_key(node.public_key)
    fields = {"operator": signer.address, "peer_id_hash": keccak256(peer_id), "nonce": 0}
    binding = eth_sign(OperatorBinding, signer, pt.TEST_DOMAIN, **fields)
    if signer is not operator:  # a binding claiming another operator, signed by the wrong wallet
        binding = dataclasses.replace(binding, operator=operator.address)
    return Announcement(
        binding=binding,
        encryption_key=pt.encryption_keys(1).public_key,
        model=MODEL,
        capacity=4,
        hardware=detect_hardware(),
        software_version="dolphin/test",
        started_at_ms=1,
    )


def _gossip(node: Identity, data: bytes, origin: str | None = None) -> GossipMessage:
    sender = origin or peer_id_to_text(peer_id_from_public_key(node.public_key))
    return GossipMessage(topic=pool_topic(MODEL), data=data, origin=sender, forwarder=sender, seqno=b"1")


def _heartbeat(node: Identity, announcement: Announcement, seq: int = 1) -> bytes:
    return heartbeat_envelope(node, announcement, load=1, queued=0, seq=seq, ttl_ms=20_000)


@pytest.mark.unit
def test_a_valid_heartbeat_makes_a_member_and_replays_are_ignored():
    view = PoolView(MODEL, pt.TEST_DOMAIN)
    node = pt.identity(1)
    data = _heartbeat(node, _announcement(node), seq=5)
    assert view.validate(_gossip(node, data)) is Verdict.ACCEPT
    (member,) = view.members()
    assert member.contact.node_key == node.public_key
    assert member.contact.encryption_key == pt.encryption_keys(1).public_key
    assert member.operator == pt.eth_account(1).address
    assert member.spare == 3
    assert view.validate(_gossip(node, data)) is Verdict.IGNORE  # same seq again
    assert view.validate(_gossip(node, _heartbeat(node, _announcement(node), seq=4))) is Verdict.IGNORE


@pytest.mark.unit
def test_a_restarted_node_replaces_its_old_heartbeat_at_once():
    """Before, heartbeats were ordered by seq alone: a restarted node counts from 1 again, so for as long as
    its old seq was higher clients kept sealing prompts to the dead node's encryption key."""
    view = PoolView(MODEL, pt.TEST_DOMAIN)
    node = pt.identity(1)
    first_run = _announcement(node)
    assert view.validate(_gossip(node, _heartbeat(node, first_run, seq=30))) is Verdict.ACCEPT
    restarted = dataclasses.replace(
        first_run,
        started_at_ms=first_run.started_at_ms + 60_000,
        encryption_key=pt.encryption_keys(2).public_key,
    )
    assert view.validate(_gossip(node, _heartbeat(node, restarted, seq=1))) is Verdict.ACCEPT
    (member,) = view.members()
    assert (member.seq, member.contact.encryption_key) == (1, pt.encryption_keys(2).public_key)
    # The old run's late heartbeats are stale now, whatever their seq.
    assert view.validate(_gossip(node, _heartbeat(node, first_run, seq=31))) is Verdict.IGNORE
    assert view.members()[0].contact.encryption_key == pt.encryption_keys(2).public_key


@pytest.mark.unit
def test_forged_or_misdirected_heartbeats_are_rejected():
    view = PoolView(MODEL, pt.TEST_DOMAIN)
    node, other = pt.identity(1), pt.identity(2)
    good = _heartbeat(node, _announcement(node))
    # Gossip origin is not the node the heartbeat speaks for.
    other_peer = peer_id_to_text(peer_id_from_public_key(other.public_key))
    assert view.validate(_gossip(node, good, origin=other_peer)) is Verdict.REJECT
    assert view.validate(_gossip(node, good, origin="12D3KooWother")) is Verdict.REJECT
    # ...and rejecting it did not spend the envelope: the genuine publication is still accepted.
    assert view.validate(_gossip(node, good)) is Verdict.ACCEPT
    view = PoolView(MODEL, pt.TEST_DOMAIN)
    # The operator binding was signed by a wallet other than the operator it names.
    forged = _heartbeat(node, _announcement(node, operator_index=1, signed_by=2))
    assert view.validate(_gossip(node, forged)) is Verdict.REJECT
    # A heartbeat for another model on this model's topic.
    wrong_model = dataclasses.replace(_announcement(node), model=b"\x07" * 32)
    assert view.validate(_gossip(node, _heartbeat(node, wrong_model))) is Verdict.REJECT
    # Flipped bits and garbage.
    assert view.validate(_gossip(node, good[:-1] + bytes([good[-1] ^ 1]))) is Verdict.REJECT
    assert view.validate(_gossip(node, b"\x93\x01\x02")) is Verdict.REJECT
    # A node cannot even build a heartbeat around another peer's binding.
    with pytest.raises(SchemaError, match="binding is for another peer id"):
        _heartbeat(other, _announcement(node))
    assert view.members() == []


@pytest.mark.unit
def test_a_heartbeat_without_a_binding_makes_an_unregistered_member():
    view = PoolView(MODEL, pt.TEST_DOMAIN)
    node, registered = pt.identity(1), pt.identity(2)
    unbound = dataclasses.replace(_announcement(node), binding=None)
    assert view.validate(_gossip(node, _heartbeat(node, unbound))) is Verdict.ACCEPT
    assert view.validate(_gossip(registered, _heartbeat(registered, _announcement(registered)))) is (
        Verdict.ACCEPT
    )
    by_key = {m.contact.node_key: m for m in view.members()}
    assert not by_key[node.public_key].registered and by_key[node.public_key].operator is None
    assert by_key[registered.public_key].registered


@pytest.mark.unit
def test_silent_members_drop_out():
    view = PoolView(MODEL, pt.TEST_DOMAIN, max_age_ms=1_000)
    node = pt.identity(1)
    assert view.validate(_gossip(node, _heartbeat(node, _announcement(node)))) is Verdict.ACCEPT
    heard = view.members()[0].heard_at_ms
    assert view.members(now_ms=heard + 999)
    assert view.members(now_ms=heard + 1_001) == []


@pytest.mark.integration
@pytest.mark.trio
async def test_heartbeats_cross_real_gossip_and_the_dht_finds_the_node(tmp_path):
    async with open_host_group(tmp_path, 3) as (_, node_host, client_host):
        node = Identity(node_host.signing_seed())
        view = PoolView(MODEL, pt.TEST_DOMAIN)
        await client_host.gossip.subscribe(pool_topic(MODEL), view.validate)
        async with trio.open_nursery() as nursery:
            announcement = _announcement(node)
            announcer = Announcer(node_host, node, lambda: announcement, lambda: (0, 0), interval=0.2)
            await nursery.start(announcer.serve)
            # A client finds pool members through the DHT and connects to them; GossipSub then carries
            # their heartbeats (only topic subscribers forward a topic, so the bootstrap peer would not).
            records = await client_host.dht.get_records(MODEL)
            (record,) = [r for r in records if r.peer_id == node_host.peer_id]
            await client_host.connect(record.addrs[0])
            await wait_until(lambda: bool(view.members()), timeout=20)
            assert view.members()[0].contact.peer_id == node_host.peer_id
            nursery.cancel_scope.cancel()


@pytest.mark.integration
@pytest.mark.trio
async def test_a_member_hands_over_its_latest_heartbeat_when_asked_and_the_asker_checks_it():
    async with open_memory_network() as network:
        node_host, client_host = network.host(pt.identity(1)), network.host(pt.identity(2))

        def serve(node: Identity, seq: int) -> None:
            latest = (MODEL, _heartbeat(node, _announcement(node), seq=seq))
            server = HeartbeatServer([types.SimpleNamespace(latest=latest)])
            node_host.set_stream_handler(HEARTBEAT_PROTOCOL, server.handle)

        serve(pt.identity(1), seq=3)
        view = PoolView(MODEL, pt.TEST_DOMAIN)
        assert await fetch_heartbeat(client_host, node_host.peer_id, MODEL, view.validate) is Verdict.ACCEPT
        (member,) = view.members()
        assert member.contact.peer_id == node_host.peer_id and member.seq == 3
        # The same one again is old news; a model the node does not serve gets the stream reset.
        assert await fetch_heartbeat(client_host, node_host.peer_id, MODEL, view.validate) is Verdict.IGNORE
        with pytest.raises(P2PError, match="closed the stream"):
            await fetch_heartbeat(client_host, node_host.peer_id, bytes(32), view.validate)
        # A node handing over another peer's heartbeat (a replay of a real one) is refused by the asker.
        serve(pt.identity(3), seq=9)
        fresh = PoolView(MODEL, pt.TEST_DOMAIN)
        assert await fetch_heartbeat(client_host, node_host.peer_id, MODEL, fresh.validate) is Verdict.REJECT
        assert fresh.members() == []
        # A malformed request is reset, and the server goes on answering.
        stream = await client_host.open_stream(node_host.peer_id, HEARTBEAT_PROTOCOL)
        await stream.write_message(b"\x93not a request")
        with pytest.raises(P2PError):
            await stream.read_message(1024)
        assert await fetch_heartbeat(client_host, node_host.peer_id, MODEL, fresh.validate) is Verdict.REJECT


async def _heartbeat_once_a_minute(node_host, nursery: trio.Nursery) -> Announcer:
    """`node_host` announces the pool and heartbeats now, then once a minute."""
    node = Identity(node_host.signing_seed())
    announcement = _announcement(node)
    announcer = Announcer(node_host, node, lambda: announcement, lambda: (0, 0), interval=60)
    await nursery.start(announcer.serve)
    return announcer


@pytest.mark.integration
@pytest.mark.trio
async def test_a_member_dialled_between_its_heartbeats_is_known_without_waiting_for_the_next(tmp_path):
    """A node heartbeats once, then not for a minute; a client that finds it later still makes it a
    member at once: the dialler asks the member for its latest heartbeat (before, only the next heartbeat
    by gossip would do, here a minute away)."""
    async with open_host_group(tmp_path, 3) as (_, node_host, client_host), trio.open_nursery() as nursery:
        announcer = await _heartbeat_once_a_minute(node_host, nursery)
        node_host.set_stream_handler(HEARTBEAT_PROTOCOL, HeartbeatServer([announcer]).handle)
        await trio.sleep(4)  # past gossip's message cache, which could still hand the first one over
        view = PoolView(MODEL, pt.TEST_DOMAIN)
        await client_host.gossip.subscribe(pool_topic(MODEL), view.validate)
        nursery.start_soon(MemberDialer(client_host, WatchSettings()).keep_connected, MODEL, view)
        await wait_until(lambda: bool(view.members()), timeout=15)
        assert view.members()[0].contact.peer_id == node_host.peer_id
        nursery.cancel_scope.cancel()


@pytest.mark.integration
@pytest.mark.trio
async def test_a_member_that_never_answers_for_its_heartbeat_holds_a_discovery_round_up_only_briefly(
    tmp_path,
):
    async with open_host_group(tmp_path, 3) as (_, node_host, client_host), trio.open_nursery() as nursery:
        await _heartbeat_once_a_minute(node_host, nursery)

        async def silent(stream) -> None:
            await trio.sleep_forever()

        node_host.set_stream_handler(HEARTBEAT_PROTOCOL, silent)
        await trio.sleep(4)  # past gossip's message cache
        view = PoolView(MODEL, pt.TEST_DOMAIN)
        asked: list[str] = []

        async def greet(peer_id: str) -> None:
            asked.append(peer_id)
            await ask_for_heartbeat(client_host, peer_id, MODEL, view.validate)

        dialer = MemberDialer(client_host, WatchSettings())
        with trio.fail_after(15):  # the stream's own deadline alone is 30 s
            await dialer.dial_members(MODEL, greet=greet)
        assert asked == [node_host.peer_id] and view.members() == []
        assert node_host.peer_id in client_host.connected_peers()
        nursery.cancel_scope.cancel()
