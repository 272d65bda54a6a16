"""Multi-process swarms on 127.0.0.1: real peers in their own processes, `dolphin relay` as bootstrap.

Each peer binds port 0 and is waited on through its ready.json; every wait has a deadline.
"""

import contextlib
import os
import time

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from p2p.config import HostConfig, Reachability, Timeouts
from p2p.errors import P2PError
from p2p.gossip import PUBLISH_THRESHOLD, accept_all
from p2p.host import open_host
from p2p.processes import relay_process
from p2p.testing import PeerProcess, isolated_namespace, prefix_validator, start_peer_processes, wait_until
from p2p.topics import BANS_TOPIC, SETTLEMENT_TOPIC, STRIKES_TOPIC, attestation_topic, pool_topic
from protocols.framing import encode_uvarint

MANIFEST = bytes.fromhex("d0" * 32)
POOL_TOPIC = pool_topic(MANIFEST)
ATTESTATION_TOPIC = attestation_topic(MANIFEST)
ALL_TOPICS = [POOL_TOPIC, ATTESTATION_TOPIC, STRIKES_TOPIC, BANS_TOPIC, SETTLEMENT_TOPIC]


@contextlib.asynccontextmanager
async def running_relay(base_dir):
    relay = relay_process(base_dir / "relay")
    try:
        await relay.wait_ready()
        yield relay
    finally:
        assert relay.stop() == 0, relay.log_tail()  # SIGTERM is a clean exit


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.trio
async def test_ten_peers_find_each_others_pool_records_and_gossip_reaches_all(tmp_path):
    async with running_relay(tmp_path) as relay:
        args = ["--bootstrap", relay.addr, "--pool", MANIFEST.hex(), "--lookup", MANIFEST.hex()]
        async with start_peer_processes(tmp_path, 10, [*args, "--subscribe", POOL_TOPIC]) as peers:
            everyone = sorted(peer.peer_id for peer in peers)
            # Every peer's own lookup lists all ten members (itself included).
            await wait_until(lambda: all(peer.looked_up() == everyone for peer in peers), timeout=60)
            async with open_host(HostConfig(tmp_path / "observer", bootstrap=(relay.addr,))) as observer:
                records = await observer.dht.get_records(MANIFEST)
                assert [record.peer_id for record in records] == everyone
                await observer.gossip.subscribe(POOL_TOPIC, accept_all)
                await wait_until(lambda: len(observer.gossip.topic_peers(POOL_TOPIC)) >= 1, timeout=20)
                await observer.gossip.publish(POOL_TOPIC, b"heartbeat from the observer")
                await wait_until(
                    lambda: all(
                        any(m["data"] == b"heartbeat from the observer" for m in peer.received())
                        for peer in peers
                    ),
                    timeout=30,
                )
            assert all(peer.alive() for peer in peers)


@contextlib.asynccontextmanager
async def running_relay_for(base_dir, namespace):
    """A relay on 127.0.0.1, and on the namespace link when there is one. Yields the relay and its
    address as the isolated side sees it."""
    extra = (f"/ip4/{namespace.outside_ip}/tcp/0",) if namespace else ()
    relay = relay_process(base_dir / "relay", extra_listen=extra)
    try:
        ready = await relay.wait_ready()
        inside = [a for a in ready["listen_addrs"] if namespace and f"/{namespace.outside_ip}/" in a]
        yield relay, (inside or [relay.addr])[0]
    finally:
        assert relay.stop() == 0, relay.log_tail()


@pytest.mark.integration
@pytest.mark.process
@pytest.mark.trio
@pytest.mark.parametrize("isolation", ["namespace", "no-listen"])
async def test_isolated_peer_is_dialled_through_the_relay(tmp_path, isolation):
    # "namespace": the peer runs in its own network namespace (root and ip(8) needed): it reaches the relay
    # over a veth link and nothing can reach it. "no-listen": it runs here with no listen address, which
    # libp2p cannot tell apart from outside, but which a bug dialling its loopback ports would not reveal.
    with isolated_namespace() if isolation == "namespace" else contextlib.nullcontext() as namespace:
        if isolation == "namespace" and namespace is None:
            pytest.skip(
                "no network namespace (needs root and ip from iproute2): the no-listen case ran alone"
            )
        async with running_relay_for(tmp_path, namespace) as (relay, relay_addr):
            assert namespace is None or f"/{namespace.outside_ip}/" in relay_addr
            args = ["--no-listen", "--bootstrap", relay_addr, "--pool", MANIFEST.hex()]
            hidden = PeerProcess(tmp_path / "hidden", args, netns=namespace.name if namespace else None)
            try:
                ready = await hidden.wait_ready()
                assert ready["listen_addrs"] == [] and ready["reachable"] is False
                assert ready["circuit_addrs"] == [f"{relay_addr}/p2p-circuit/p2p/{hidden.peer_id}"]
                async with open_host(HostConfig(tmp_path / "dialer", bootstrap=(relay.addr,))) as dialer:
                    # Found through the DHT, its record carries only the circuit address ...
                    records = await dialer.dht.get_records(MANIFEST)
                    assert [(r.peer_id, list(r.addrs)) for r in records] == [
                        (hidden.peer_id, ready["circuit_addrs"])
                    ]
                    # ... and open_stream dials through the relay on its own.
                    assert await dialer.ping(hidden.peer_id) < 5
            finally:
                hidden.stop()


def _malformed_frames():
    return [
        bytes([5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),  # the 6-byte /meshsub frame of DESIGN.md
        b"\xff\xff\xff\xff\x0f" + b"x" * 16,  # a 4 GiB length prefix
        encode_uvarint(40) + os.urandom(40),
        os.urandom(300),
        b"\x80" * 12,  # an unterminated varint
        b"",
    ]


def _malformed_rpcs(topic: str, attacker_id: bytes):
    unsigned = rpc_pb2.RPC(
        publish=[rpc_pb2.Message(from_id=b"\x00garbage", data=b"x", seqno=b"1", topicIDs=[topic])]
    )
    badly_signed = rpc_pb2.RPC(
        publish=[
            rpc_pb2.Message(
                from_id=attacker_id, data=b"x", seqno=b"12345678", topicIDs=[topic], signature=b"\x01" * 64
            )
        ]
    )
    subscriptions = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=topic)] * 5000)
    control = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID=topic)] * 500))
    return [rpc.SerializeToString() for rpc in (unsigned, badly_signed, subscriptions, control)]


@pytest.mark.integration
@pytest.mark.trio
async def test_malformed_frames_on_every_protocol_and_topic_do_not_kill_a_peer(tmp_path):
    subscribe = [arg for topic in ALL_TOPICS for arg in ("--subscribe", topic)]
    target = PeerProcess(tmp_path / "target", ["--reachability", "public", *subscribe])
    try:
        await target.wait_ready()
        config = HostConfig(tmp_path / "attacker", bootstrap=(target.addr,))
        async with open_host(config) as attacker:
            target_id = ID.from_base58(target.peer_id)
            await attacker._wait_protocols_known(target_id)
            protocols = sorted(attacker._host.get_peerstore().get_protocols(target_id))
            assert "/meshsub/1.2.0" in protocols and "/dolphin/kad/1.0.0" in protocols
            for protocol in protocols:
                for frame in _malformed_frames():
                    with contextlib.suppress(P2PError):
                        stream = await attacker.open_stream(target.peer_id, protocol, timeout=3)
                        await stream.write(frame, timeout=3)
                        await stream.close()
            for topic in ALL_TOPICS:
                for rpc in _malformed_rpcs(topic, attacker._host.get_id().to_bytes()):
                    with contextlib.suppress(P2PError):
                        stream = await attacker.open_stream(target.peer_id, "/meshsub/1.1.0", timeout=3)
                        await stream.write(encode_uvarint(len(rpc)) + rpc, timeout=3)
                        await stream.close()
                await attacker.gossip.publish(topic, b"bad" + os.urandom(64))  # signed, fails the topic check

        assert target.alive(), target.log_tail()
        # Still a working peer: a newcomer reaches it and its gossip is delivered on every topic.
        async with open_host(HostConfig(tmp_path / "newcomer", bootstrap=(target.addr,))) as newcomer:
            assert await newcomer.ping(target.peer_id) < 5
            await wait_until(lambda: target.peer_id in newcomer.gossip.topic_peers(BANS_TOPIC), timeout=15)
            for topic in ALL_TOPICS:
                await newcomer.gossip.publish(topic, b"fine")
            await wait_until(
                lambda: {m["topic"] for m in target.received() if m["data"] == b"fine"} == set(ALL_TOPICS),
                timeout=15,
            )
        assert not [m for m in target.received() if m["data"].startswith(b"bad")]
    finally:
        target.stop()


@pytest.mark.integration
@pytest.mark.trio
async def test_flooding_peer_is_scored_down_and_pruned_while_valid_messages_flow(tmp_path):
    topic = ATTESTATION_TOPIC
    config = HostConfig(tmp_path / "receiver", reachability=Reachability.PUBLIC)
    async with open_host(config) as receiver:
        subscription = await receiver.gossip.subscribe(topic, prefix_validator(b"bad"))
        bootstrap = ["--bootstrap", receiver.listen_addrs()[0], "--subscribe", topic]
        flooder = PeerProcess(tmp_path / "flooder", [*bootstrap, "--flood", topic, "--flood-rate", "40"])
        honest = PeerProcess(tmp_path / "honest", [*bootstrap, "--publish", topic, "--publish-rate", "5"])
        try:
            await flooder.wait_ready()
            await honest.wait_ready()
            await wait_until(
                lambda: receiver.gossip.peer_score(flooder.peer_id, topic) < PUBLISH_THRESHOLD, timeout=20
            )
            await wait_until(lambda: flooder.peer_id not in receiver.gossip.mesh_peers(topic), timeout=10)
            # The flood goes on; valid messages keep arriving, and the honest peer keeps a clean score.
            with trio.fail_after(20):
                valid = [await subscription.receive() for _ in range(10)]
            assert {m.origin for m in valid} == {honest.peer_id}
            assert receiver.gossip.peer_score(honest.peer_id, topic) >= 0
            assert flooder.alive() and honest.alive()
        finally:
            flooder.stop()
            honest.stop()


@pytest.mark.integration
@pytest.mark.trio
async def test_sigstopped_peer_does_not_hang_the_others(tmp_path):
    async with running_relay(tmp_path) as relay:
        args = ["--bootstrap", relay.addr, "--pool", MANIFEST.hex(), "--subscribe", POOL_TOPIC]
        async with start_peer_processes(tmp_path, 3, args) as (frozen, *others):
            timeouts = Timeouts(dial=3, stream_open=3, stream_io=3, dht_query=3)
            async with open_host(
                HostConfig(tmp_path / "me", bootstrap=(relay.addr,), timeouts=timeouts)
            ) as me:
                await me.gossip.subscribe(POOL_TOPIC, accept_all)
                await me.connect(frozen.addr)
                await wait_until(lambda: len(me.gossip.topic_peers(POOL_TOPIC)) >= 1, timeout=15)
                frozen.pause()
                try:
                    started = time.monotonic()
                    with pytest.raises(P2PError):
                        await me.ping(frozen.peer_id)
                    records = await me.dht.get_records(MANIFEST)
                    assert {o.peer_id for o in others} <= {r.peer_id for r in records}
                    await me.gossip.publish(POOL_TOPIC, b"while one peer is frozen")
                    await wait_until(
                        lambda: all(
                            any(m["data"] == b"while one peer is frozen" for m in o.received())
                            for o in others
                        ),
                        timeout=20,
                    )
                    assert time.monotonic() - started < 40  # bounded by our deadlines, not by the frozen peer
                finally:
                    frozen.resume()
