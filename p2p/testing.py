"""Test doubles and swarm factories, shipped beside the code (in the manner of trinity's p2p/tools).

- `open_host_group(base_dir, count)`: in-process hosts, the first one the others' bootstrap peer;
  `open_swarm` starts larger groups several at a time;
- `PeerProcess` / `start_peer_processes`: test peers in their own processes (`python -m p2p.testing`;
  daemons' processes are `p2p.processes`), optionally inside an `isolated_namespace()`, bound to port 0
  on 127.0.0.1; they are waited on through ready.json, never with fixed sleeps;
- `read_received`: what a peer process logged from its subscriptions (topic, data, origin, forwarder);
- `wait_until`: poll a condition under a deadline (for effects that have no event to wait on).

A peer process subscribes with a validator that rejects payloads starting with `--reject-prefix`, can
announce pool records, and can flood a topic with payloads its peers will reject.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from p2p.config import HostConfig, Reachability
from p2p.daemon import serve_peer
from p2p.gossip import GossipMessage, Verdict
from p2p.host import DolphinHost, open_host
from p2p.processes import LOCALHOST, DaemonProcess
from runtime.files import write_atomically

RECEIVED_FILE = "received.jsonl"
LOOKUP_FILE = "lookup.json"


async def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> None:
    """Return once `condition()` is true; trio.TooSlowError after `timeout` seconds."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(interval)


def prefix_validator(reject_prefix: bytes) -> Callable[[GossipMessage], Verdict]:
    """A stand-in schema check: payloads starting with `reject_prefix` are invalid."""

    def validate(message: GossipMessage) -> Verdict:
        return Verdict.REJECT if message.data.startswith(reject_prefix) else Verdict.ACCEPT

    return validate


@contextlib.asynccontextmanager
async def open_host_group(
    base_dir: Path, count: int, *, relay_service: bool = True, **config: Any
) -> AsyncIterator[list[DolphinHost]]:
    """`count` in-process hosts on 127.0.0.1; host 0 is a public relay/bootstrap peer for the others."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            open_host(
                HostConfig(base_dir / "host-0", relay_service=relay_service, reachability=Reachability.PUBLIC)
            )
        )
        hosts = [first]
        for index in range(1, count):
            hosts.append(
                await stack.enter_async_context(
                    open_host(
                        HostConfig(base_dir / f"host-{index}", bootstrap=(first.listen_addrs()[0],), **config)
                    )
                )
            )
        yield hosts


@contextlib.asynccontextmanager
async def open_swarm(
    base_dir: Path, count: int, *, concurrency: int = 8, **config: Any
) -> AsyncIterator[list[DolphinHost]]:
    """Like `open_host_group`, but the hosts after the first start `concurrency` at a time (large swarms)."""
    async with trio.open_nursery() as nursery:
        first = await nursery.start(
            _serve_host,
            HostConfig(base_dir / "host-0", relay_service=True, reachability=Reachability.PUBLIC),
        )
        hosts: list[DolphinHost] = [first]
        limiter = trio.CapacityLimiter(concurrency)

        async def start_one(index: int) -> None:
            async with limiter:
                host_config = HostConfig(
                    base_dir / f"host-{index}", bootstrap=(first.listen_addrs()[0],), **config
                )
                hosts.append(await nursery.start(_serve_host, host_config))

        async with trio.open_nursery() as starters:
            for index in range(1, count):
                starters.start_soon(start_one, index)
        yield hosts
        nursery.cancel_scope.cancel()


async def _serve_host(
    config: HostConfig, *, task_status: trio.TaskStatus[DolphinHost] = trio.TASK_STATUS_IGNORED
) -> None:
    async with open_host(config) as host:
        task_status.started(host)
        await trio.sleep_forever()


class PeerProcess(DaemonProcess):
    """A test peer (`python -m p2p.testing`, see `main`) in its own process, or another program's."""

    def __init__(
        self,
        data_dir: Path,
        args: list[str],
        *,
        program: tuple[str, ...] = ("p2p.testing",),
        netns: str | None = None,
    ) -> None:
        super().__init__(data_dir, args, program=program, netns=netns)

    def received(self) -> list[dict]:
        return read_received(self.data_dir)

    def looked_up(self) -> list[str]:
        """Peer ids in this peer's latest `--lookup` result ([] before the first one)."""
        path = self.data_dir / LOOKUP_FILE
        return json.loads(path.read_text())["peers"] if path.exists() else []


@dataclasses.dataclass(frozen=True)
class NetworkNamespace:
    """A network namespace joined to ours by a veth pair: `inside_ip` can reach `outside_ip` only."""

    name: str
    outside_ip: str
    inside_ip: str


@contextlib.contextmanager
def isolated_namespace() -> Iterator[NetworkNamespace | None]:
    """A fresh network namespace with a point-to-point link to this one, removed on exit.

    Yields None where namespaces cannot be made (not root, no `ip`, no CAP_NET_ADMIN); callers then
    fall back to a peer with no listen address in our own namespace. The link stays on this machine.
    """
    tag = f"{os.getpid() % 100000}{next(_NAMESPACE_COUNTER)}"
    name, outside, inside = f"dolphin{tag}", f"vdo{tag}", f"vdi{tag}"
    subnet = 16 + (os.getpid() + next(_NAMESPACE_COUNTER)) % 200
    outside_ip, inside_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
        ["ip", "link", "set", inside, "netns", name],
        ["ip", "addr", "add", f"{outside_ip}/30", "dev", outside],
        ["ip", "link", "set", outside, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{inside_ip}/30", "dev", inside],
        ["ip", "netns", "exec", name, "ip", "link", "set", inside, "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    made = os.geteuid() == 0 and shutil.which("ip") is not None
    try:
        for step in steps if made else []:
            if subprocess.run(step, capture_output=True).returncode != 0:
                made = False
                break
        yield NetworkNamespace(name, outside_ip, inside_ip) if made else None
    finally:
        if os.geteuid() == 0 and shutil.which("ip") is not None:
            subprocess.run(["ip", "link", "del", outside], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


_NAMESPACE_COUNTER = itertools.count()


@contextlib.asynccontextmanager
async def start_peer_processes(
    base_dir: Path, count: int, args: list[str], *, name: str = "peer", timeout: float = 60.0
) -> AsyncIterator[list[PeerProcess]]:
    """Start `count` peer processes with the same arguments at once, wait for all to be ready."""
    peers = [PeerProcess(base_dir / f"{name}-{index}", args) for index in range(count)]
    try:
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(peer.wait_ready, timeout)
        yield peers
    finally:
        for peer in peers:
            peer.stop()


def read_received(data_dir: Path) -> list[dict]:
    """The messages a peer process logged, oldest first (`data` hex-decoded back to bytes)."""
    path = Path(data_dir) / RECEIVED_FILE
    if not path.exists():
        return []
    messages = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # the last line may still be being written
            entry = json.loads(line)
            entry["data"] = bytes.fromhex(entry["data"])
            messages.append(entry)
    return messages


# ---- the peer process itself ----


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m p2p.testing", description="A test peer.")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--listen", action="append", default=None, help="multiaddr; default 127.0.0.1:0")
    parser.add_argument(
        "--no-listen", action="store_true", help="no direct address: reachable via relays only"
    )
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--relay-service", action="store_true")
    parser.add_argument("--reachability", choices=[r.value for r in Reachability], default="auto")
    parser.add_argument("--pool", action="append", default=[], help="manifest hash (hex) to announce")
    parser.add_argument("--subscribe", action="append", default=[], help="topic to subscribe to and log")
    parser.add_argument("--reject-prefix", default="bad", help="payload prefix the validator rejects")
    parser.add_argument("--flood", default=None, help="topic to flood with rejected payloads")
    parser.add_argument("--flood-rate", type=float, default=50.0, help="flood messages per second")
    parser.add_argument("--publish", default=None, help="topic to publish valid payloads on")
    parser.add_argument("--publish-rate", type=float, default=5.0, help="valid messages per second")
    parser.add_argument("--lookup", default=None, help="manifest hash (hex) to look up every second")
    return parser.parse_args(argv)


async def _run_peer(args: argparse.Namespace) -> None:
    listen: tuple[str, ...] = () if args.no_listen else tuple(args.listen or [LOCALHOST])
    config = HostConfig(
        data_dir=args.data_dir,
        listen=listen,
        bootstrap=tuple(args.bootstrap),
        relay_service=args.relay_service,
        reachability=Reachability(args.reachability),
    )
    reject_prefix = args.reject_prefix.encode()
    log_path = args.data_dir / RECEIVED_FILE

    async def log_messages(subscription) -> None:
        with open(log_path, "a") as log:
            async for message in subscription:
                entry = {
                    "topic": message.topic,
                    "data": message.data.hex(),
                    "origin": message.origin,
                    "forwarder": message.forwarder,
                    "time": time.time(),
                }
                log.write(json.dumps(entry) + "\n")
                log.flush()

    async def flood(host: DolphinHost) -> None:
        counter = 0
        while True:
            counter += 1
            await host.gossip.publish(args.flood, reject_prefix + counter.to_bytes(8, "big"))
            await trio.sleep(1 / args.flood_rate)

    async def publish(host: DolphinHost) -> None:
        counter = 0
        while True:
            counter += 1
            await host.gossip.publish(
                args.publish, b"ok:" + host.peer_id.encode() + b":" + str(counter).encode()
            )
            await trio.sleep(1 / args.publish_rate)

    async def look_up(host: DolphinHost) -> None:
        # The lookup result is rewritten each round so a test can wait until it lists everyone.
        manifest_hash = bytes.fromhex(args.lookup)
        while True:
            records = await host.dht.get_records(manifest_hash)
            document = {"peers": [record.peer_id for record in records], "time": time.time()}
            write_atomically(args.data_dir / LOOKUP_FILE, json.dumps(document).encode())
            await trio.sleep(1.0)

    async with trio.open_nursery() as nursery:

        async def on_ready(host: DolphinHost) -> dict:
            for topic in args.subscribe:
                subscription = await host.gossip.subscribe(topic, prefix_validator(reject_prefix))
                nursery.start_soon(log_messages, subscription)
            records = [
                await host.dht.put_record(bytes.fromhex(h), host.advertised_addrs(), 3600) for h in args.pool
            ]
            if args.flood:
                nursery.start_soon(flood, host)
            if args.publish:
                nursery.start_soon(publish, host)
            if args.lookup:
                nursery.start_soon(look_up, host)
            return {"pool_records": len(records)}

        await serve_peer(config, on_ready=on_ready)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    trio.run(_run_peer, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
