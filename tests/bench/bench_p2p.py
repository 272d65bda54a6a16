"""p2p: DHT lookup latency (10, 30, 60 peers), gossip propagation to 95% of subscribers, and stream
throughput through the host and through a relay as a ratio to a plain TCP socket, all in one run.

Every peer here is an in-process `p2p.open_host` host on 127.0.0.1 sharing one trio loop (and one CPU
core): absolute numbers are pessimistic, which is why throughput is reported against a plain TCP socket
driven the same way in the same run (both ends in this process too). The machines are shared; expect
run-to-run noise of tens of percent.
"""

from __future__ import annotations

import functools
import logging
import statistics
import tempfile
import time
from pathlib import Path

import trio

from p2p.config import HostConfig, Reachability
from p2p.gossip import accept_all
from p2p.host import open_host
from p2p.testing import open_swarm, wait_until

DHT_SIZES = (10, 30, 60)
POOL_MEMBERS = 5
LOOKUPS_PER_SIZE = 10
GOSSIP_SUBSCRIBERS = 30
GOSSIP_MESSAGES = 20
CHUNK = 64 * 1024
TCP_BYTES = 64 * 1024 * 1024
HOST_BYTES = 32 * 1024 * 1024
RELAY_BYTES = 16 * 1024 * 1024
SINK = "/dolphin/bench/sink/1"
MANIFEST = bytes.fromhex("be" * 32)


def _summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(1000 * ordered[-1], 1),
        "samples": len(ordered),
    }


async def _dht_lookups(base: Path, size: int) -> dict:
    async with open_swarm(base, size, reachability=Reachability.PUBLIC) as hosts:
        members = hosts[1 : 1 + POOL_MEMBERS]
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(member.dht.put_record, MANIFEST, member.advertised_addrs(), 600)
        expected = sorted(member.peer_id for member in members)
        searchers = hosts[-LOOKUPS_PER_SIZE:]
        latencies, complete = [], 0
        for searcher in searchers:
            started = time.perf_counter()
            records = await searcher.dht.get_records(MANIFEST)
            latencies.append(time.perf_counter() - started)
            complete += [r.peer_id for r in records] == expected
        return {**_summary(latencies), "peers": size, "complete_lookups": complete}


async def _gossip_propagation(base: Path) -> dict:
    topic = "/dolphin/bench/gossip/1"
    async with open_swarm(base, GOSSIP_SUBSCRIBERS + 1, reachability=Reachability.PUBLIC) as hosts:
        publisher, subscribers = hosts[0], hosts[1:]
        arrivals: dict[bytes, list[float]] = {}

        async def record(subscription) -> None:  # type: ignore[no-untyped-def]
            async for message in subscription:
                arrivals.setdefault(message.data, []).append(time.perf_counter())

        async with trio.open_nursery() as nursery:
            for subscriber in subscribers:
                nursery.start_soon(record, await subscriber.gossip.subscribe(topic, accept_all))
            await wait_until(lambda: len(publisher.gossip.topic_peers(topic)) == len(subscribers), timeout=30)
            await trio.sleep(3)  # a few heartbeats: let the meshes form as they would in a running pool
            needed = -(-95 * len(subscribers) // 100)
            latencies, sent = [], {}
            for index in range(GOSSIP_MESSAGES):
                payload = b"bench %d" % index
                sent[payload] = time.perf_counter()
                await publisher.gossip.publish(topic, payload)
                await trio.sleep(0.1)
            await wait_until(lambda: all(len(arrivals.get(p, [])) >= needed for p in sent), timeout=30)
            for payload, started in sent.items():
                latencies.append(sorted(arrivals[payload])[needed - 1] - started)
            delivered = sum(len(arrivals.get(p, [])) for p in sent) / (len(sent) * len(subscribers))
            nursery.cancel_scope.cancel()
        return {
            **_summary(latencies),
            "subscribers": len(subscribers),
            "delivered_fraction": round(delivered, 4),
        }


async def _tcp_throughput() -> float:
    received = 0
    done = trio.Event()

    async def sink(stream) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        while data := await stream.receive_some(CHUNK):
            received += len(data)
        done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, sink, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        chunk = b"\x00" * CHUNK
        started = time.perf_counter()
        client = await trio.open_tcp_stream("127.0.0.1", port)
        for _ in range(TCP_BYTES // CHUNK):
            await client.send_all(chunk)
        await client.aclose()
        await done.wait()
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    assert received == TCP_BYTES
    return TCP_BYTES / elapsed / 1e6


async def _sink(stream) -> None:  # type: ignore[no-untyped-def]
    received = 0
    while data := await stream.read(CHUNK, timeout=60):
        received += len(data)
    await stream.write(received.to_bytes(8, "big"))
    await stream.close()


async def _host_throughput(sender, receiver_id: str, total: int) -> float:  # type: ignore[no-untyped-def]
    chunk = b"\x00" * CHUNK
    started = time.perf_counter()
    stream = await sender.open_stream(receiver_id, SINK)
    for _ in range(total // CHUNK):
        await stream.write(chunk, timeout=60)
    await stream.close_write()  # the sink sees EOF and answers with its byte count
    count = int.from_bytes(await stream.read_exactly(8, timeout=60), "big")
    elapsed = time.perf_counter() - started
    assert count == total, (count, total)
    return total / elapsed / 1e6


async def _throughputs(base: Path) -> dict:
    tcp = await _tcp_throughput()
    relay_config = HostConfig(base / "relay", relay_service=True, reachability=Reachability.PUBLIC)
    async with open_host(relay_config) as relay:
        bootstrap = (relay.listen_addrs()[0],)
        async with (
            open_host(
                HostConfig(base / "direct", bootstrap=bootstrap, reachability=Reachability.PUBLIC)
            ) as direct,
            open_host(HostConfig(base / "hidden", bootstrap=bootstrap, listen=())) as hidden,
            open_host(HostConfig(base / "sender", bootstrap=bootstrap)) as sender,
        ):
            direct.set_stream_handler(SINK, _sink)
            hidden.set_stream_handler(SINK, _sink)
            await sender.connect(direct.listen_addrs()[0])
            host = await _host_throughput(sender, direct.peer_id, HOST_BYTES)
            await sender.connect(hidden.circuit_addrs()[0])
            relayed = await _host_throughput(sender, hidden.peer_id, RELAY_BYTES)
    return {
        "tcp_mb_per_s": round(tcp, 1),
        "host_mb_per_s": round(host, 1),
        "relay_mb_per_s": round(relayed, 1),
        "host_over_tcp": round(host / tcp, 3),
        "relay_over_tcp": round(relayed / tcp, 3),
    }


async def _run_all(base: Path) -> dict:
    results: dict = {"dht_lookup": {}}
    for size in DHT_SIZES:
        results["dht_lookup"][str(size)] = await _dht_lookups(base / f"dht-{size}", size)
    results["gossip_to_95_percent"] = await _gossip_propagation(base / "gossip")
    results["stream_throughput"] = await _throughputs(base / "streams")
    return results


def run(out_dir: Path) -> dict:
    logging.getLogger("libp2p").setLevel(logging.ERROR)  # remote misbehaviour is logged as warnings
    with tempfile.TemporaryDirectory(prefix="bench-p2p-") as base:
        return trio.run(_run_all, Path(base))
