"""p2p takes its names from protocols.ids and parses pool topics through that one definition."""

import pytest

import protocols.ids
from p2p import topics
from p2p.topics import KAD_PROTOCOL, manifest_hash_of_pool_topic, pool_topic


@pytest.mark.unit
def test_names_come_from_protocols():
    for name in ("BANS_TOPIC", "STRIKES_TOPIC", "SETTLEMENT_TOPIC", "pool_topic", "attestation_topic"):
        assert getattr(topics, name) is getattr(protocols.ids, name)
    assert KAD_PROTOCOL == protocols.ids.DHT_PROTOCOL == "/dolphin/kad/1.0.0"


@pytest.mark.unit
def test_pool_topic_round_trip():
    manifest = bytes(range(32))
    topic = pool_topic(manifest)
    assert topic == f"/dolphin/pool/{manifest.hex()}/1"
    assert manifest_hash_of_pool_topic(topic) == manifest


@pytest.mark.unit
@pytest.mark.parametrize(
    "topic",
    [
        "/dolphin/pool/abcd/1",
        "/dolphin/pool/" + "AB" * 32 + "/1",  # upper-case hex is not the canonical name
        "/dolphin/pool/" + "zz" * 32 + "/1",
        "/dolphin/pool/" + "ab" * 32 + "/2",
        "/dolphin/pool/" + "ab" * 32,
        protocols.ids.BANS_TOPIC,
    ],
)
def test_malformed_pool_topics(topic):
    assert manifest_hash_of_pool_topic(topic) is None
