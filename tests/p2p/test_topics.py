"""Topic names live in one place and pool topics round-trip their manifest hash."""

import pytest

from p2p.topics import (
    ATTESTATIONS_TOPIC,
    BANS_TOPIC,
    KAD_PROTOCOL,
    STRIKES_TOPIC,
    manifest_hash_of_pool_topic,
    pool_topic,
)


@pytest.mark.unit
def test_fixed_names():
    assert (ATTESTATIONS_TOPIC, STRIKES_TOPIC, BANS_TOPIC) == (
        "/dolphin/attestations/1",
        "/dolphin/strikes/1",
        "/dolphin/bans/1",
    )
    assert KAD_PROTOCOL == "/dolphin/kad/1.0.0"


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
        ATTESTATIONS_TOPIC,
    ],
)
def test_malformed_pool_topics(topic):
    assert manifest_hash_of_pool_topic(topic) is None


@pytest.mark.unit
def test_pool_topic_needs_32_bytes():
    with pytest.raises(ValueError):
        pool_topic(b"\x00" * 31)
