"""The watcher's catalogue of what the network serves (MODELS_TOPIC), attacked: a peer flooding heartbeats
for made-up models cannot make a gateway watch without end, and a heartbeat claiming another peer's
identity adds nothing."""

import contextlib
import dataclasses
import os

import pytest
import trio

from node.announce import Announcement, detect_hardware, heartbeat_envelope
from p2p.testing import open_host_group
from pool.watch import WatchSettings, open_pool_watcher
from protocols import envelope
from protocols import testing as pt
from protocols.ids import MODELS_TOPIC
from protocols.keys import Identity, peer_id_from_public_key
from protocols.messages import PoolHeartbeat

pytestmark = pytest.mark.integration

LIMIT = 3


def _heartbeat(identity: Identity, model: bytes) -> bytes:
    announcement = Announcement(
        binding=None,
        encryption_key=pt.encryption_keys(1).public_key,
        model=model,
        capacity=4,
        hardware=detect_hardware(),
        software_version="dolphin/test",
        started_at_ms=1,
        model_name="made-up",
    )
    return heartbeat_envelope(identity, announcement, load=0, queued=0, seq=1, ttl_ms=20_000)


def _impersonating(identity: Identity, victim: Identity, model: bytes) -> bytes:
    """A heartbeat naming `victim`'s peer id, signed by `identity`."""
    heartbeat = envelope.open_signed(_heartbeat(identity, model), PoolHeartbeat).message
    forged = dataclasses.replace(heartbeat, peer_id=peer_id_from_public_key(victim.public_key))
    return envelope.sign(forged, identity, ttl_ms=20_000)


@contextlib.asynccontextmanager
async def _attacker_and_watcher(tmp_path, limit: int):
    """An attacking peer and a gateway's watcher listening to the catalogue, directly connected."""
    async with open_host_group(tmp_path, 2) as (attacker, gateway):
        settings = WatchSettings(max_catalogue_models=limit, first_discovery_interval=0.2)
        async with open_pool_watcher(gateway, settings=settings) as watcher:
            await watcher.watch_catalogue()
            yield attacker, Identity(attacker.signing_seed()), watcher


async def _until_watched(watcher, count: int, publish) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(30):  # publish until the mesh carries it (the subscription takes a moment)
        while len(watcher.watched()) < count:
            await publish()
            await trio.sleep(0.3)


@pytest.mark.trio
async def test_a_flood_of_made_up_models_is_watched_only_up_to_the_limit(tmp_path):
    async with _attacker_and_watcher(tmp_path, LIMIT) as (attacker, identity, watcher):
        made_up = [os.urandom(32) for _ in range(4 * LIMIT)]

        async def flood() -> None:
            for model in made_up:
                await attacker.gossip.publish(MODELS_TOPIC, _heartbeat(identity, model))

        await _until_watched(watcher, LIMIT, flood)
        await flood()
        await trio.sleep(1.0)  # every heartbeat sent has arrived
        watched = {pool.model for pool in watcher.watched()}
        assert len(watched) == LIMIT and watched <= set(made_up)


@pytest.mark.trio
async def test_a_heartbeat_in_another_peers_name_adds_no_model(tmp_path):
    async with _attacker_and_watcher(tmp_path, 64) as (attacker, identity, watcher):
        honest, impersonated = os.urandom(32), os.urandom(32)

        async def announce() -> None:
            await attacker.gossip.publish(MODELS_TOPIC, _heartbeat(identity, honest))

        await _until_watched(watcher, 1, announce)  # the mesh is up
        for _ in range(5):
            forged = _impersonating(identity, pt.identity(7), impersonated)
            await attacker.gossip.publish(MODELS_TOPIC, forged)
            await trio.sleep(0.2)
        await trio.sleep(1.0)
        assert {pool.model for pool in watcher.watched()} == {honest}
