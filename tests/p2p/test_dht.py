"""The DHT: strict validation on /dolphin/kad/1.0.0, and signed pool records found by manifest hash."""

import contextlib

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.records.utils import InvalidRecordType
from libp2p.records.validator import NamespacedValidator

from p2p import HostConfig, P2PError, open_host
from p2p.config import Reachability, Timeouts
from p2p.dht import POOL_NAMESPACE, PoolRecordValidator, pool_provider_key, pool_record_key
from p2p.errors import RecordError
from p2p.records import sign_pool_record
from p2p.testing import open_host_group, wait_until
from p2p.topics import KAD_PROTOCOL
from protocols import codec

MANIFEST = bytes(range(32))
OTHER_MANIFEST = bytes(32)
ADDRS = ["/ip4/127.0.0.1/tcp/4001"]


def _record_bytes(key_pair, manifest=MANIFEST):
    return sign_pool_record(key_pair.private_key, ADDRS, manifest, 600).raw


@pytest.mark.unit
def test_validator_accepts_only_a_record_under_its_own_key():
    key_pair = create_new_key_pair()
    value = _record_bytes(key_pair)
    from libp2p.peer.id import ID

    peer_id = ID.from_pubkey(key_pair.public_key).to_base58()
    validator = PoolRecordValidator()
    validator.validate(pool_record_key(MANIFEST, peer_id), value)
    other_peer = ID.from_pubkey(create_new_key_pair().public_key).to_base58()
    with pytest.raises(RecordError, match="another"):
        validator.validate(pool_record_key(MANIFEST, other_peer), value)  # stored under someone else's id
    with pytest.raises(RecordError, match="another"):
        validator.validate(pool_record_key(OTHER_MANIFEST, peer_id), value)
    with pytest.raises(RecordError, match="not a pool record key"):
        validator.validate(f"/{POOL_NAMESPACE}/{MANIFEST.hex()}", value)
    assert len(pool_record_key(MANIFEST, peer_id).encode()) <= 128  # kad servers refuse longer keys


@pytest.mark.unit
def test_select_prefers_the_freshest_valid_record():
    key_pair = create_new_key_pair()
    older = sign_pool_record(key_pair.private_key, ADDRS, MANIFEST, 300)
    newer = sign_pool_record(key_pair.private_key, ADDRS, MANIFEST, 600)
    # The newest record with its expiry pushed later under the original signature.
    version, signed_part, signature = codec.unpack(newer.raw)
    items = list(codec.unpack(signed_part))
    items[5] += 60_000
    forged = codec.pack([version, codec.pack(items), signature])
    key = pool_record_key(MANIFEST, older.peer_id)
    assert PoolRecordValidator().select(key, [older.raw, forged, newer.raw]) == 2


@pytest.mark.unit
def test_strict_namespaces_refuse_everything_else():
    validator = NamespacedValidator({POOL_NAMESPACE: PoolRecordValidator()}, strict_validation=True)
    for key in ("/pk/whatever", "/ipns/whatever", "no-namespace"):
        with pytest.raises(InvalidRecordType, match="No validator registered"):
            validator.validate(key, b"anything")


@pytest.mark.unit
def test_provider_key_is_a_sha256_multihash_per_model():
    key = pool_provider_key(MANIFEST)
    assert key[:2] == bytes([0x12, 0x20]) and len(key) == 34
    assert key != pool_provider_key(OTHER_MANIFEST)


@pytest.mark.integration
@pytest.mark.trio
async def test_members_find_each_others_records_and_forgeries_are_refused(tmp_path):
    async with open_host_group(tmp_path, 5) as hosts:
        assert all(KAD_PROTOCOL in host._host.get_mux().get_protocols() for host in hosts)
        members = hosts[1:4]
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(member.dht.put_record, MANIFEST, member.advertised_addrs(), 600)
        expected = sorted(member.peer_id for member in members)
        for searcher in hosts:
            records = await searcher.dht.get_records(MANIFEST)
            assert [r.peer_id for r in records] == expected
            assert all(r.addrs and r.manifest_hash == MANIFEST for r in records)
        assert await hosts[4].dht.get_records(OTHER_MANIFEST) == []
        # Before their records, the members as their provider entries name them: dialable at once.
        heard: dict[str, list[str]] = {}
        await members[0].dht.get_records(MANIFEST, on_member=heard.setdefault)
        assert sorted(heard) == sorted(member.peer_id for member in members[1:])
        for member in members[1:]:
            assert set(member.listen_addrs()) <= set(heard[member.peer_id]), heard

        # A forged record (stored under a member's key, signed by someone else) is refused by the server.
        server, attacker, victim = hosts[0], hosts[4], members[0]
        key = pool_record_key(MANIFEST, victim.peer_id)
        forged = _record_bytes(create_new_key_pair())
        before = server.dht._kad.value_store.get(key.encode())
        stored = await attacker.dht._kad.value_store._store_at_peer(
            server._host.get_id(), key.encode(), forged
        )
        assert not stored
        assert server.dht._kad.value_store.get(key.encode()) == before
        assert [r.peer_id for r in await attacker.dht.get_records(MANIFEST)] == expected


@pytest.mark.integration
@pytest.mark.trio
async def test_served_records_are_renewed_before_they_expire(tmp_path):
    async with open_host_group(tmp_path, 2) as (searcher, member), trio.open_nursery() as nursery:
        first = await nursery.start(member.dht.serve_record, MANIFEST, member.advertised_addrs, 3)
        await trio.sleep(4.5)  # past the first record's expiry
        records = await searcher.dht.get_records(MANIFEST)
        assert [r.peer_id for r in records] == [member.peer_id]
        assert records[0].expires_at > first.expires_at
        nursery.cancel_scope.cancel()


@pytest.mark.integration
@pytest.mark.trio
async def test_a_lookup_through_a_dead_connection_to_the_server_dials_it_again(tmp_path, monkeypatch):
    # CI: `dolphin chain claim`'s light client found no validator in the DHT for 300 s; a connection to
    # its bootstrap peer that py-libp2p still listed but that could carry nothing fails every query.
    async with open_host_group(tmp_path, 2) as (server, member):
        await member.dht.put_record(MANIFEST, member.advertised_addrs(), 600)
        config = HostConfig.light_client(tmp_path / "client", bootstrap=(server.listen_addrs()[0],))
        async with open_host(config) as client:
            network = client._host.get_network()
            (held,) = network.get_connections(ID.from_base58(server.peer_id))

            async def write_fails(data: bytes) -> None:
                raise OSError("Broken pipe")

            monkeypatch.setattr(held.muxed_conn.secured_conn, "write", write_fails)
            records = await client.dht.get_records(MANIFEST)
            assert [r.peer_id for r in records] == [member.peer_id]
            assert held not in network.get_connections(ID.from_base58(server.peer_id))


@pytest.mark.integration
@pytest.mark.trio
async def test_an_announcement_through_a_dead_connection_to_the_server_dials_it_again(tmp_path, monkeypatch):
    async with open_host_group(tmp_path, 2) as (server, member):
        network = member._host.get_network()
        (held,) = network.get_connections(ID.from_base58(server.peer_id))

        async def write_fails(data: bytes) -> None:
            raise OSError("Broken pipe")

        monkeypatch.setattr(held.muxed_conn.secured_conn, "write", write_fails)
        await member.dht.put_record(MANIFEST, member.advertised_addrs(), 600)

        def server_lists_the_member() -> bool:
            providers = server.dht._kad.provider_store.get_providers(pool_provider_key(MANIFEST))
            return [info.peer_id.to_base58() for info in providers] == [member.peer_id]

        await wait_until(server_lists_the_member, timeout=10)  # ADD_PROVIDER is fire-and-forget


@pytest.mark.integration
@pytest.mark.trio
async def test_silent_dht_streams_cannot_take_a_servers_dht(tmp_path):
    """A peer holding DHT streams open without a word (as every lookup abandoned mid-answer left them)
    used to take all twelve of a server's slots for as long as its connection lived: after that nobody
    found anything through the server. Now one peer holds at most sixteen, and a silent one is reset."""
    idle = 3.0
    server_config = HostConfig(
        tmp_path / "server", reachability=Reachability.PUBLIC, timeouts=Timeouts(dht_stream_idle=idle)
    )
    async with open_host(server_config) as server:
        bootstrap = (server.listen_addrs()[0],)
        async with (
            open_host(HostConfig(tmp_path / "member", bootstrap=bootstrap)) as member,
            open_host(HostConfig(tmp_path / "silent", bootstrap=bootstrap)) as silent,
        ):
            await member.dht.put_record(MANIFEST, member.advertised_addrs(), 600)
            held = []
            for _ in range(20):
                with contextlib.suppress(P2PError):  # the server resets those over the per-peer cap
                    held.append(await silent.open_stream(server.peer_id, KAD_PROTOCOL))
            await wait_until(lambda: server.statistics()["dht_inbound_streams"] >= 16, timeout=10)
            assert server.statistics()["dht_inbound_streams"] == 16
            searcher_config = HostConfig.light_client(tmp_path / "searcher", bootstrap=bootstrap)
            async with open_host(searcher_config) as searcher:
                records = await searcher.dht.get_records(MANIFEST)
            assert [r.peer_id for r in records] == [member.peer_id]
            await wait_until(lambda: server.statistics()["dht_inbound_streams"] == 0, timeout=idle + 5)
