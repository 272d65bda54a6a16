"""Far peers: deadlines that grow with the measured round trip, over a user-space delay proxy."""

import contextlib
import math

import pytest
import trio

from p2p.config import HostConfig, Reachability, Timeouts
from p2p.errors import DialError, ProtocolNotSupported
from p2p.host import HOP_PROTOCOL, open_host
from p2p.testing import wait_until
from tests.bench.delay_proxy import DelayProxy, FlightClock, Link

pytestmark = [pytest.mark.integration]

ONE_WAY_S = 0.2
# Long enough for the first direct dial (one round trip of 0.4 s), too short for a circuit dial at this
# distance (about 3 round trips to the relay): only a deadline that scales lets it through.
DIAL_S = 1.0


@contextlib.asynccontextmanager
async def _far_relay(tmp_path, link: Link):
    """A relay on 127.0.0.1 and two delayed ways to it (one for the hidden peer, one for the client)."""
    relay_config = HostConfig(tmp_path / "relay", relay_service=True, reachability=Reachability.PUBLIC)
    async with open_host(relay_config) as relay, trio.open_nursery() as nursery:
        port = int(relay.listen_addrs()[0].split("/tcp/")[1].split("/")[0])
        proxies = [
            await nursery.start(DelayProxy(link, ("127.0.0.1", port)).serve, "127.0.0.1") for _ in "ab"
        ]
        yield relay, [f"/ip4/127.0.0.1/tcp/{p.port}/p2p/{relay.peer_id}" for p in proxies]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_delay_proxy_adds_the_one_way_delay_each_way_and_caps_the_rate():
    link = Link(0.1, rate_bytes_s=100_000)
    async with trio.open_nursery() as nursery:
        echo = await trio.open_tcp_listeners(0, host="127.0.0.1")

        async def serve_echo(stream):
            async with stream:
                async for data in stream:
                    await stream.send_all(data)

        nursery.start_soon(trio.serve_listeners, serve_echo, echo)
        proxy = await nursery.start(
            DelayProxy(link, ("127.0.0.1", echo[0].socket.getsockname()[1])).serve, "127.0.0.1"
        )
        async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as stream:
            started = trio.current_time()
            await stream.send_all(b"x")
            assert await stream.receive_some(1) == b"x"
            assert 0.2 <= trio.current_time() - started < 0.4  # one round trip: 2 x 100 ms
            started = trio.current_time()
            await stream.send_all(b"y" * 20_000)
            received = 0
            while received < 20_000:
                received += len(await stream.receive_some(65536))
            assert trio.current_time() - started >= 0.2 + 2 * 20_000 / 100_000  # delay + both ways' rate
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_far_relayed_peer_is_dialled_within_a_deadline_scaled_by_the_round_trip(tmp_path):
    link = Link(ONE_WAY_S, math.inf)
    timeouts = Timeouts(dial=DIAL_S)
    async with _far_relay(tmp_path, link) as (_relay, (for_hidden, for_client)):
        hidden_config = HostConfig(tmp_path / "hidden", listen=(), bootstrap=(for_hidden,), timeouts=timeouts)
        async with open_host(hidden_config) as hidden:
            assert hidden.circuit_addrs(), "the hidden peer holds a reservation across the delay"
            client_config = HostConfig.light_client(
                tmp_path / "client", bootstrap=(for_client,), timeouts=timeouts
            )
            async with open_host(client_config) as client:
                relay_rtt = client.round_trip(for_client.rsplit("/", 1)[1])
                assert relay_rtt is not None and relay_rtt >= 2 * ONE_WAY_S
                started = trio.current_time()
                assert await client.connect(hidden.circuit_addrs()[0]) == hidden.peer_id
                elapsed = trio.current_time() - started
                assert elapsed > DIAL_S  # the fixed deadline would have cut it off
                # The HOP and STOP streams' selections ride with their requests, the upgrades' with Noise
                # (p2p/multistream.py), and Noise's first message with CONNECT (p2p/host.py): 3.1 round
                # trips measured; 5.2 waiting for the relay's STATUS, 8.1 with eager HOP and STOP, 12.2
                # before any of these.
                assert elapsed / (2 * ONE_WAY_S) < 4


@pytest.mark.trio
async def test_a_circuit_dial_cut_off_by_its_deadline_leaves_no_stream_at_the_relay(tmp_path):
    # The dialler's HOP stream carries the circuit from the moment CONNECT leaves; a dial whose deadline
    # passes during the handshake over it must close it, or each such dial held a stream at the relay.
    link = Link(ONE_WAY_S, math.inf)
    async with _far_relay(tmp_path, link) as (relay, (for_hidden, for_client)):
        hidden_config = HostConfig(tmp_path / "hidden", listen=(), bootstrap=(for_hidden,))
        async with open_host(hidden_config) as hidden:
            client_config = HostConfig.light_client(tmp_path / "client", bootstrap=(for_client,))
            async with open_host(client_config) as client:
                with pytest.raises(DialError, match="took over"):
                    await client.connect(hidden.circuit_addrs()[0], timeout=4 * ONE_WAY_S)  # 2 round trips
                await wait_until(
                    lambda: not relay.statistics()["inbound_streams"].get(HOP_PROTOCOL), timeout=10
                )


async def _echo(stream):
    await stream.write_message(await stream.read_message(1024))
    await stream.close()


@pytest.mark.trio
@pytest.mark.parametrize("optimistic", [True, False])
async def test_an_optimistic_stream_answers_in_one_round_trip_on_a_warm_connection(tmp_path, optimistic):
    one_way = 0.3  # long beside the CPU time a loaded machine adds to the handshakes
    link = Link(one_way, math.inf)
    server_config = HostConfig(tmp_path / "server", reachability=Reachability.PUBLIC)
    async with open_host(server_config) as server, trio.open_nursery() as nursery:
        server.set_stream_handler("/dolphin/test/echo/1", _echo)
        port = int(server.listen_addrs()[0].split("/tcp/")[1].split("/")[0])
        proxy = await nursery.start(DelayProxy(link, ("127.0.0.1", port)).serve, "127.0.0.1")
        async with open_host(HostConfig.light_client(tmp_path / "client")) as client:
            await client.connect(f"/ip4/127.0.0.1/tcp/{proxy.port}/p2p/{server.peer_id}")
            started = trio.current_time()
            stream = await client.open_stream(server.peer_id, "/dolphin/test/echo/1", optimistic=optimistic)
            await stream.write_message(b"ping")
            assert await stream.read_message(1024) == b"ping"
            round_trips = (trio.current_time() - started) / (2 * one_way)
            if optimistic:
                assert round_trips < 1.5  # selection, request and answer in one flight
            else:
                assert round_trips > 1.5  # the selection's round trip (header and proposal together), then
                assert round_trips < 2.5  # the request's: py-libp2p's own client took three
            await stream.close()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_direct_dial_costs_one_round_trip_its_upgrade_selections_riding_along(tmp_path):
    one_way = 0.3
    server_config = HostConfig(tmp_path / "server", reachability=Reachability.PUBLIC)
    async with open_host(server_config) as server, trio.open_nursery() as nursery:
        server.set_stream_handler("/dolphin/test/echo/1", _echo)
        port = int(server.listen_addrs()[0].split("/tcp/")[1].split("/")[0])
        proxy = await nursery.start(DelayProxy(Link(one_way), ("127.0.0.1", port)).serve, "127.0.0.1")
        async with open_host(HostConfig.light_client(tmp_path / "client")) as client:
            started = trio.current_time()
            await client.connect(f"/ip4/127.0.0.1/tcp/{proxy.port}/p2p/{server.peer_id}")
            round_trips = (trio.current_time() - started) / (2 * one_way)
            assert round_trips < 1.5  # Noise's; the security and muxer selections took one each before
            stream = await client.open_stream(server.peer_id, "/dolphin/test/echo/1", optimistic=True)
            await stream.write_message(b"ping")
            assert await stream.read_message(1024) == b"ping"  # the listener's answers were read and agreed
            await stream.close()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_an_optimistic_stream_to_a_protocol_the_peer_lacks_fails_on_first_read(tmp_path):
    async with open_host(HostConfig(tmp_path / "server", reachability=Reachability.PUBLIC)) as server:
        async with open_host(HostConfig.light_client(tmp_path / "client")) as client:
            await client.connect(server.listen_addrs()[0])
            stream = await client.open_stream(server.peer_id, "/dolphin/test/absent/1", optimistic=True)
            await stream.write_message(b"anyone?")
            with pytest.raises(ProtocolNotSupported, match="does not speak /dolphin/test/absent/1"):
                await stream.read_message(1024)
            await stream.reset()
        assert server.statistics()["inbound_handler_failures"] == 0


@pytest.mark.unit
def test_the_flight_clock_counts_parallel_flights_once_and_gaps_not_at_all():
    clock = FlightClock()
    clock.record(0.0, 0.5)
    clock.record(0.1, 0.6)  # in parallel with the first: only its last 0.1 s is new
    clock.record(2.0, 2.5)  # after a gap (CPU time, say) that is not counted
    assert clock.total_s == pytest.approx(1.1)
    clock.reset()
    assert clock.total_s == 0.0
