"""Hole punching (p2p.holepunch): a relayed connection moves to a direct one, and what a peer supplies is
dialled only within the rules."""

import multiaddr
import pytest
import trio

from p2p import holepunch
from p2p.config import HostConfig
from p2p.errors import StreamError
from p2p.holepunch import DCUTR_PROTOCOL, MAX_DIALLED_ADDRS, dialable_addrs
from p2p.host import open_host
from p2p.testing import open_host_group, wait_until

ECHO = "/dolphin/test/echo/1"


async def _echo(stream):
    await stream.write_message(await stream.read_message(1024))
    await stream.close()


async def _refused(stream) -> bool:
    """Whether the peer ended `stream` (closed or reset) without a word."""
    try:
        return await stream.read(64, timeout=10) == b""
    except StreamError:
        return True


def _addr(text: str) -> bytes:
    return multiaddr.Multiaddr(text).to_bytes()


@pytest.mark.unit
def test_only_global_tcp_addresses_are_dialled_unless_private_ones_are_allowed():
    given = [
        _addr("/ip4/127.0.0.1/tcp/4001"),
        _addr("/ip4/10.1.2.3/tcp/4001"),
        _addr("/ip4/192.168.0.9/tcp/4001"),
        _addr("/ip4/169.254.1.1/tcp/4001"),
        _addr("/ip4/0.0.0.0/tcp/4001"),
        _addr("/ip4/224.0.0.1/tcp/4001"),
        _addr("/ip4/8.8.8.8/udp/4001"),
        _addr("/dns4/example.com/tcp/4001"),
        _addr("/ip4/1.2.3.4/tcp/4001/p2p-circuit"),
        b"\xff\xfe not a multiaddr",
        _addr("/ip4/1.2.3.4/tcp/4001"),
        _addr("/ip6/2001:4860::8888/tcp/4001"),
    ]
    assert [str(a) for a in dialable_addrs(given, allow_private=False)] == [
        "/ip4/1.2.3.4/tcp/4001",
        "/ip6/2001:4860::8888/tcp/4001",
    ]
    allowed = [str(a) for a in dialable_addrs(given, allow_private=True)]
    assert allowed == [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/10.1.2.3/tcp/4001",
        "/ip4/192.168.0.9/tcp/4001",
        "/ip4/169.254.1.1/tcp/4001",
    ]


@pytest.mark.unit
def test_at_most_a_few_addresses_are_dialled_each_once():
    many = [_addr(f"/ip4/1.2.3.{n}/tcp/4001") for n in range(1, 20)]
    assert len(dialable_addrs(many + many, allow_private=False)) == MAX_DIALLED_ADDRS
    twice = [_addr("/ip4/1.2.3.4/tcp/4001")] * 3
    assert len(dialable_addrs(twice, allow_private=False)) == 1


@pytest.mark.integration
@pytest.mark.trio
async def test_a_relayed_connection_moves_to_a_direct_one_and_new_streams_take_it(tmp_path):
    # The node has no listen address: the client reaches it through the relay. The node then dials the
    # client, which listens, and the client's next stream goes over that direct connection.
    async with open_host_group(tmp_path, 2, listen=(), hole_punch_private_addrs=True) as (relay, node):
        node.set_stream_handler(ECHO, _echo)
        config = HostConfig(tmp_path / "client", bootstrap=(relay.listen_addrs()[0],))
        async with open_host(config) as client:
            await client.connect(node.circuit_addrs()[0])
            first = await client.open_stream(node.peer_id, ECHO)
            assert first.relayed
            await wait_until(lambda: not client.relayed_only(node.peer_id), timeout=15)
            second = await client.open_stream(node.peer_id, ECHO)
            assert not second.relayed
            await second.write_message(b"direct")
            assert await second.read_message(1024) == b"direct"
            await first.write_message(b"still relayed")  # the circuit keeps what it carries
            assert await first.read_message(1024) == b"still relayed"
            assert node.statistics()["hole_punches"]["direct"] == 1
            assert client.statistics()["hole_punches"]["answered"] == 1


@pytest.mark.integration
@pytest.mark.trio
async def test_a_client_at_a_private_address_stays_relayed_by_default(tmp_path):
    # 127.0.0.1 is not a global address: a node must not be steered into its own network.
    async with open_host_group(tmp_path, 2, listen=()) as (relay, node):
        config = HostConfig(tmp_path / "client", bootstrap=(relay.listen_addrs()[0],))
        async with open_host(config) as client:
            await client.connect(node.circuit_addrs()[0])
            await wait_until(lambda: node.statistics()["hole_punches"]["failed"] == 1, timeout=15)
            assert client.relayed_only(node.peer_id)
            assert node.statistics()["hole_punches"]["direct"] == 0


@pytest.mark.integration
@pytest.mark.trio
async def test_a_malformed_or_out_of_order_exchange_is_refused_and_the_host_goes_on(tmp_path):
    async with open_host_group(tmp_path, 2, listen=()) as (relay, node):
        node.set_stream_handler(ECHO, _echo)
        config = HostConfig(tmp_path / "client", bootstrap=(relay.listen_addrs()[0],), hole_punching=False)
        async with open_host(config) as client:
            await client.connect(node.circuit_addrs()[0])
            for garbage in (b"\x08\x64\x12\xff\xff", b"\x08\x2c\x01", b"\x08" * 3):
                stream = await client.open_stream(node.peer_id, DCUTR_PROTOCOL)
                await stream.write_message(garbage)
                assert await _refused(stream)
            stream = await client.open_stream(node.peer_id, DCUTR_PROTOCOL)
            await stream.write(b"\xff" * 10)  # a length prefix no message has
            assert await _refused(stream)
            echo = await client.open_stream(node.peer_id, ECHO)
            await echo.write_message(b"alive")
            assert await echo.read_message(1024) == b"alive"
        with trio.fail_after(5):
            assert node.connected_peers()  # still up, still holding its relay


@pytest.mark.unit
@pytest.mark.trio
async def test_a_peer_is_punched_once_a_minute_and_the_host_at_most_thirty_times(monkeypatch):
    # Each exchange makes the host dial what a peer named: a peer reconnecting through relays, or many
    # peers at once, must not turn a node into a dialler of whatever they name.
    now = [1000.0]
    monkeypatch.setattr(holepunch.time, "monotonic", lambda: now[0])
    puncher = holepunch.HolePuncher(None, allow_private=False)  # type: ignore[arg-type]  # no host needed
    assert puncher._may_punch("peer-a")
    assert not puncher._may_punch("peer-a")
    now[0] += holepunch.PUNCH_COOLDOWN_SECONDS
    assert puncher._may_punch("peer-a")
    granted = sum(puncher._may_punch(f"peer-{n}") for n in range(100))
    assert granted == holepunch.PUNCHES_PER_MINUTE - 2  # the two of peer-a count too
    now[0] += 61
    assert puncher._may_punch("peer-new")
