"""Interoperability with js-libp2p: a Node peer (tests/p2p/js_peer.mjs, packages pinned in package.json)
speaks TCP + Noise + Yamux, kad-dht on /dolphin/kad/1.0.0, gossipsub and circuit relay v2 with us.

It reserves a slot on `dolphin relay`, is dialled through it by our host, exchanges gossip with it on a
shared topic, and finds one of our peers in the DHT and is found by it.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from p2p.config import HostConfig
from p2p.gossip import accept_all
from p2p.host import open_host
from p2p.processes import relay_process
from p2p.testing import wait_until

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[2]
JS_PEER = Path(__file__).with_name("js_peer.mjs")
TOPIC = "/dolphin/interop/1"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "libp2p").is_dir():
        pytest.fail(
            "the js-libp2p interop test needs Node.js and the npm packages: run `npm install` in the repo"
        )
    return node


class JsPeer:
    """The Node process, with its JSON-lines reports collected as they arrive."""

    def __init__(self, relay_addr: str, find: str) -> None:
        self.events: list[dict] = []
        self.process = subprocess.Popen(
            [_node(), str(JS_PEER), "--relay", relay_addr, "--topic", TOPIC, "--find", find],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )

    async def collect(self) -> None:
        while line := await trio.to_thread.run_sync(self.process.stdout.readline, abandon_on_cancel=True):
            self.events.append(json.loads(line))

    def first(self, name: str) -> dict | None:
        return next((event for event in self.events if event["event"] == name), None)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.mark.integration
@pytest.mark.trio
async def test_js_libp2p_peer_joins_the_dht_the_relay_and_gossip(tmp_path):
    _node()
    relay = relay_process(tmp_path / "relay")
    try:
        await relay.wait_ready()
        async with (
            open_host(HostConfig(tmp_path / "py", bootstrap=(relay.addr,))) as ours,
            # A second peer the js peer is never told about: it can only find it through the DHT.
            open_host(HostConfig(tmp_path / "finder", bootstrap=(relay.addr,))) as finder,
        ):
            subscription = await ours.gossip.subscribe(TOPIC, accept_all)
            js = JsPeer(relay.addr, find=finder.peer_id)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(js.collect)
                    await wait_until(lambda: js.first("ready") is not None, timeout=30)
                    js_id = js.first("ready")["peerId"]
                    circuit = f"{relay.addr}/p2p-circuit/p2p/{js_id}"
                    # The js peer holds a reservation on our relay and announces the circuit address ...
                    assert circuit in js.first("ready")["addrs"]
                    # ... through which our host dials it (Noise end to end, across the relay) and pings.
                    await ours.connect(circuit)
                    assert await ours.ping(js_id) < 5

                    # Gossip both ways on a shared topic.
                    message = await subscription.receive(timeout=30)
                    assert message.data.startswith(b"js:") and message.origin == js_id
                    await wait_until(lambda: js_id in ours.gossip.topic_peers(TOPIC), timeout=15)
                    for _ in range(20):
                        await ours.gossip.publish(TOPIC, b"py:hello")
                        if any(e["event"] == "message" and e["data"] == "py:hello" for e in js.events):
                            break
                        await trio.sleep(0.5)
                    assert any(e["event"] == "message" and e["data"] == "py:hello" for e in js.events)

                    # The DHT, both ways.
                    await wait_until(lambda: js.first("found") is not None, timeout=60)
                    assert js.first("found")["peerId"] == finder.peer_id
                    direct = {addr.split("/p2p/")[0] for addr in finder.listen_addrs()}
                    assert direct & {addr.split("/p2p/")[0] for addr in js.first("found")["addrs"]}, js.first(
                        "found"
                    )
                    # A newcomer that never met the js peer finds it through the relay's DHT entry.
                    async with open_host(HostConfig(tmp_path / "seeker", bootstrap=(relay.addr,))) as seeker:
                        found = {addr.split("/p2p/")[0] for addr in await seeker.dht.find_peer(js_id)}
                        assert found & {addr.split("/p2p/")[0] for addr in js.first("ready")["addrs"]}
                    nursery.cancel_scope.cancel()
            finally:
                js.stop()
    finally:
        relay.stop()
