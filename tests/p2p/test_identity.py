"""The persistent identity survives restarts, is private to its owner, and refuses foreign files; light
clients take a throwaway one per session."""

import stat

import pytest
from libp2p.crypto.keys import KeyType
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair

from p2p.config import DhtMode, HostConfig, Reachability
from p2p.errors import IdentityError
from p2p.host import open_host
from p2p.identity import IDENTITY_FILE, ephemeral_identity, load_or_create_identity, peer_id_of


@pytest.mark.unit
def test_identity_is_created_once_and_reused(tmp_path):
    first = load_or_create_identity(tmp_path)
    second = load_or_create_identity(tmp_path)
    assert peer_id_of(first) == peer_id_of(second)
    assert peer_id_of(first).startswith("12D3KooW")  # Ed25519 peer ids (identity multihash)
    assert stat.S_IMODE((tmp_path / IDENTITY_FILE).stat().st_mode) == 0o600


@pytest.mark.unit
def test_corrupt_identity_is_an_identity_error(tmp_path):
    (tmp_path / IDENTITY_FILE).write_bytes(b"garbage")
    with pytest.raises(IdentityError, match="move it away"):
        load_or_create_identity(tmp_path)


@pytest.mark.unit
def test_non_ed25519_identity_is_refused(tmp_path):
    (tmp_path / IDENTITY_FILE).write_bytes(create_secp256k1_key_pair().private_key.serialize())
    with pytest.raises(IdentityError, match="Ed25519"):
        load_or_create_identity(tmp_path)


@pytest.mark.unit
def test_ephemeral_identities_are_fresh_each_time_and_never_written(tmp_path):
    first, second = ephemeral_identity(), ephemeral_identity()
    assert peer_id_of(first) != peer_id_of(second)
    assert first.private_key.get_type() == KeyType.Ed25519
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_light_client_hosts_take_a_throwaway_identity(tmp_path):
    config = HostConfig.light_client(tmp_path, bootstrap=())
    assert config.ephemeral_identity and config.dht_mode is DhtMode.CLIENT
    assert not HostConfig(tmp_path).ephemeral_identity  # nodes keep their bound peer id
    assert HostConfig.light_client(tmp_path, dht_mode=DhtMode.AUTO).dht_mode is DhtMode.AUTO


@pytest.mark.integration
@pytest.mark.trio
async def test_each_light_client_session_is_another_peer(tmp_path):
    """Before, every host loaded the permanent key in its data dir, so nodes and relays saw the same client
    peer id on every request whatever session key signed it."""
    async with open_host(HostConfig(tmp_path / "node", reachability=Reachability.PUBLIC)) as node:
        seen = set()
        for _ in range(2):
            config = HostConfig.light_client(tmp_path / "client", bootstrap=(node.listen_addrs()[0],))
            async with open_host(config) as client:
                seen.add(client.peer_id)
                assert node.peer_id in client.connected_peers()
        assert len(seen) == 2
        assert not (tmp_path / "client" / IDENTITY_FILE).exists()
