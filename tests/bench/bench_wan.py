"""wan: `dolphin ask` over real distances — TTFT and wall time against one-way delay, direct and relayed.

Every hop goes through a user-space delay (and bandwidth) proxy (`tests.bench.delay_proxy`; this kernel
has no netem), which adds D ms one way in each direction:

    direct:   client --D--> node            client --D--> relay <--D-- node  (bootstrap, DHT, gossip)
    relayed:  client --D--> relay --D--> node  (the node has no listen address: a relay circuit only)

Where root may make network namespaces, each node runs in its own (p2p.testing.isolated_namespace) and
can reach the rest only through the proxies listening on its veth's outer end; it announces the proxy
in front of it (`--announce`) as its direct address. Elsewhere everything shares 127.0.0.1 and the
node's announce address is what keeps clients on the proxy.

One relay and node per path, kept while the delay changes (the node↔relay link is warm, as it is in a
running network); every ask is a fresh `dolphin ask --json` process, so each is a cold ask: bootstrap
dial, DHT lookup, dial of the node, then the request. Per point the table gives the median wall time,
the first token after the client is connected to the node (`first_token_after_connect_ms`, from the
ask's JSON), and the round trips they cost: extra time over the D=0 point divided by the round trip in
question (one hop: 2D; client↔node: 2D direct, 4D relayed). On a busy shared machine the wall clock
is noisy, so the client's proxies also keep a flight clock (tests.bench.delay_proxy.FlightClock): the
time anything was in flight on the client's own hop(s), over 2D, counts the round trips on the critical
path whatever the CPU does (relayed: the relay↔node leg of a circuit round trip is not in it).

The punch path (`punch_rows`) puts a `dolphin gateway` in front of the relayed node instead, asking it
WAN_GATEWAY_REQUESTS times in a row, once where the node can dial the gateway back (hole punching,
p2p.holepunch) and once where it cannot; it writes wan_punch.md.

Knobs (environment): WAN_DELAYS_MS (default 0,100,250,500), WAN_ASKS (3), WAN_RATE_KBIT (no cap),
WAN_PATHS (direct,relayed,punch; punch runs on the relayed path's peers when both are named),
WAN_GATEWAY_REQUESTS (5), WAN_PUNCH_DELAYS_MS (those of WAN_DELAYS_MS), WAN_ASK_TIMEOUT_S (180).
Writes wan.md (the table) and wan.png (the plot) beside wan.json.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from node.benchmark import BENCHMARK_FILE
from node.config import CONFIG_FILE as NODE_CONFIG_FILE
from node.models import TINY_MODEL_NAME, build_tiny_model
from node.processes import NODE_PROGRAM
from p2p.processes import relay_process
from p2p.testing import PeerProcess, isolated_namespace
from runtime.http import free_local_port
from tests.bench.delay_proxy import DelayProxy, FlightClock, Link

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Say something about dolphins."
MAX_TOKENS = 16


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


class WanNetwork:
    """One path's peers and proxies (see the module docstring). Made by `open_wan_network`."""

    def __init__(
        self,
        path: str,
        link: Link,
        client_bootstrap: str,
        node: PeerProcess,
        clock: FlightClock,
        outer_ip: str,
    ) -> None:
        self.path = path
        self.outer_ip = outer_ip  # where the node's namespace reaches this one (proxies listen there)
        self.link = link
        self.client_clock = clock  # flights on the client's own hop(s)
        self.client_bootstrap = client_bootstrap
        self.node = node

    def set_delay(self, delay_ms: float) -> None:
        self.link.delay_s = delay_ms / 1000


@contextlib.asynccontextmanager
async def open_wan_network(
    base: Path, path: str, model_dir: Path, link: Link, *, benchmark_from: Path | None = None
) -> AsyncIterator[WanNetwork]:
    """A relay, a node (relay-only when `path` is "relayed") and the delay proxies between them."""
    relay = relay_process(base / "relay")
    node: PeerProcess | None = None
    with isolated_namespace() as namespace:
        try:
            await relay.wait_ready(60)
            relay_port = int(relay.addr.split("/tcp/")[1].split("/")[0])
            outer = namespace.outside_ip if namespace else "127.0.0.1"
            async with trio.open_nursery() as nursery:
                clock = FlightClock()
                to_relay = await nursery.start(
                    DelayProxy(link, ("127.0.0.1", relay_port), clock).serve, "127.0.0.1"
                )
                node_to_relay = await nursery.start(DelayProxy(link, ("127.0.0.1", relay_port)).serve, outer)
                node_dir = base / "node"
                node_dir.mkdir(parents=True, exist_ok=True)
                if benchmark_from is not None:
                    shutil.copyfile(benchmark_from, node_dir / BENCHMARK_FILE)
                # The clients' addresses here are private ones (the veth's, 127.0.0.1): the node may dial
                # them back to move a relayed connection off the relay (the punch path).
                (node_dir / NODE_CONFIG_FILE).write_text("hole_punch_private_addrs = true\n")
                args = [
                    "--model",
                    str(model_dir),
                    "--local-api",
                    "127.0.0.1:0",
                    "--heartbeat-interval",
                    "1",
                    "--bootstrap",
                    f"/ip4/{outer}/tcp/{node_to_relay.port}/p2p/{relay.peer_id}",
                ]
                if path == "direct":
                    inside = namespace.inside_ip if namespace else "127.0.0.1"
                    node_port = free_local_port() if namespace is None else 4002
                    to_node = await nursery.start(
                        DelayProxy(link, (inside, node_port), clock).serve, "127.0.0.1"
                    )
                    args += ["--listen", f"/ip4/{inside}/tcp/{node_port}"]
                    args += ["--announce", f"/ip4/127.0.0.1/tcp/{to_node.port}"]
                else:
                    args += ["--no-listen"]
                node = PeerProcess(
                    node_dir, args, program=NODE_PROGRAM, netns=namespace.name if namespace else None
                )
                await node.wait_ready(300)
                bootstrap = f"/ip4/127.0.0.1/tcp/{to_relay.port}/p2p/{relay.peer_id}"
                yield WanNetwork(path, link, bootstrap, node, clock, outer)
                nursery.cancel_scope.cancel()
        finally:
            if node is not None:
                node.stop()
            relay.stop()


async def ask_once(network: WanNetwork, model_dir: Path, timeout: float) -> dict:
    """One cold `dolphin ask --json`: its wall time, and its JSON (or its error)."""
    network.client_clock.reset()
    started = time.perf_counter()
    command = [sys.executable, "-m", "cli.main", "ask", "--bootstrap", network.client_bootstrap]
    command += [
        "--model",
        str(model_dir),
        "--max-tokens",
        str(MAX_TOKENS),
        "--json",
        "--timeout",
        str(timeout),
    ]
    with trio.move_on_after(timeout + 30):
        done = await trio.run_process(
            [*command, PROMPT], capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            return {"ok": False, "wall_s": wall, "error": done.stderr.decode(errors="replace")[-400:]}
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
        receipt = answer["receipts"][-1] if answer["receipts"] else {}
        return {
            "ok": True,
            "wall_s": wall,
            "client_hop_flight_s": network.client_clock.total_s,
            "ttft_ms": answer["ttft_ms"],
            "first_token_after_connect_ms": receipt.get("first_token_after_connect_ms"),
        }
    return {"ok": False, "wall_s": time.perf_counter() - started, "error": "no exit within the timeout"}


PUNCH_MODES = ("relayed only", "hole punched")


async def punch_rows(
    network: WanNetwork, base: Path, model_dir: Path, delays: list[float], requests: int, timeout: float
) -> list[dict]:
    """A `dolphin gateway` asking the relayed node `requests` times in a row, per delay and per mode: a
    fresh gateway each time, its first request cold (the circuit dial), the rest on the connection it
    made. "hole punched": the gateway listens where the node can reach it (through a delay proxy on the
    node's own hop) and announces that, so the node dials it back after the relayed connection
    (p2p.holepunch); "relayed only": it announces a port nobody answers (behind NAT too), so the node's
    dial fails and every request stays on the circuit."""
    rows = []
    log = network.node.data_dir / "peer.log"
    async with trio.open_nursery() as nursery:
        for mode in PUNCH_MODES:
            for delay in delays:
                network.set_delay(delay)
                gateway_port = free_local_port()
                if mode == "hole punched":
                    proxy = DelayProxy(network.link, ("127.0.0.1", gateway_port))
                    announced = (await nursery.start(proxy.serve, network.outer_ip)).port
                else:
                    announced = free_local_port()  # nothing listens there
                punched_before = log.read_text(errors="replace").count(PUNCH_LOG_LINE)
                gateway = PeerProcess(
                    base / f"gateway-{len(rows)}",
                    [
                        *("--bootstrap", network.client_bootstrap, "--http", "127.0.0.1:0"),
                        *("--chain-dir", str(base / "no-chain"), "--model", str(model_dir)),
                        *("--listen", f"/ip4/127.0.0.1/tcp/{gateway_port}"),
                        *("--announce", f"/ip4/{network.outer_ip}/tcp/{announced}"),
                    ],
                    program=("cli.main", "gateway"),
                )
                try:
                    await gateway.wait_ready(120)
                    times = [
                        await trio.to_thread.run_sync(_streamed_first_token, gateway.ready["http"], timeout)
                        for _ in range(requests)
                    ]
                finally:
                    gateway.stop()
                punched = log.read_text(errors="replace").count(PUNCH_LOG_LINE) - punched_before
                later = [t for t in times[1:] if t is not None]
                rows.append(
                    {
                        "mode": mode,
                        "delay_ms": delay,
                        "requests": requests,
                        "ok": sum(t is not None for t in times),
                        "punched": punched,
                        "first_request_ttft_ms": times[0],
                        "later_ttft_ms": _median(later),
                        "ttft_ms": times,
                    }
                )
                print(punch_table([rows[-1]]).splitlines()[-1], flush=True)
        nursery.cancel_scope.cancel()
    for row in rows:
        zero = next((r for r in rows if r["mode"] == row["mode"] and r["delay_ms"] == 0), None)
        row["later_node_round_trips"] = None
        if zero and row["delay_ms"] > 0 and row["later_ttft_ms"] is not None and zero["later_ttft_ms"]:
            row["later_node_round_trips"] = round(
                (row["later_ttft_ms"] - zero["later_ttft_ms"]) / (2 * row["delay_ms"]), 2
            )
    return rows


PUNCH_LOG_LINE = "moved off its relay"


def _streamed_first_token(url: str, timeout: float) -> float | None:
    """Milliseconds from sending one streamed chat request to its first content chunk (None: failed).
    The first request waits until the gateway has heard of a node."""
    import httpx

    body = {
        "model": TINY_MODEL_NAME,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "stream": True,
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=timeout) as answer:
                if answer.status_code == 503:  # no node heard of yet
                    time.sleep(0.5)
                    continue
                first = None
                for line in answer.iter_lines():  # the whole answer, as a client reads it
                    if first is None and line.startswith("data:") and '"content"' in line:
                        first = (time.perf_counter() - started) * 1000
                return first
        except httpx.HTTPError:
            return None
    return None


def punch_table(rows: list[dict]) -> str:
    lines = [
        "| gateway → relayed node | D one-way (ms) | requests ok | node dialled back | first request: first "
        "token (ms) | later requests: first token, median (ms) | later: client↔node round trips over D=0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['delay_ms']:g} | {row['ok']}/{row['requests']} | {row['punched']} "
            f"| {_fmt(row['first_request_ttft_ms'], digits=0)} | {_fmt(row['later_ttft_ms'], digits=0)} "
            f"| {_fmt(row.get('later_node_round_trips'), digits=2)} |"
        )
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(path: str, delay_ms: float, asks: list[dict], baseline: dict | None) -> dict:
    """A table row: medians over the successful asks, and round trips counted against the D=0 row."""
    ok = [a for a in asks if a["ok"]]
    row = {
        "path": path,
        "delay_ms": delay_ms,
        "asks": len(asks),
        "ok": len(ok),
        "wall_s": _median([a["wall_s"] for a in ok]),
        "first_token_after_connect_ms": _median(
            [a["first_token_after_connect_ms"] for a in ok if a["first_token_after_connect_ms"] is not None]
        ),
        "errors": sorted(
            {a["error"].strip().splitlines()[-1][:200] for a in asks if not a["ok"] and a["error"].strip()}
        ),
    }
    hop_rtt_s = 2 * delay_ms / 1000
    node_rtt_s = hop_rtt_s * (2 if path == "relayed" else 1)
    row["hop_round_trips"] = row["node_round_trips_to_first_token"] = row["client_hop_round_trips"] = None
    if delay_ms > 0 and ok:
        row["client_hop_round_trips"] = round(_median([a["client_hop_flight_s"] for a in ok]) / hop_rtt_s, 1)
    if baseline is not None and delay_ms > 0 and row["wall_s"] is not None and baseline["wall_s"] is not None:
        row["hop_round_trips"] = round((row["wall_s"] - baseline["wall_s"]) / hop_rtt_s, 1)
        first, first0 = row["first_token_after_connect_ms"], baseline["first_token_after_connect_ms"]
        if first is not None and first0 is not None:
            row["node_round_trips_to_first_token"] = round((first - first0) / 1000 / node_rtt_s, 2)
    return row


def _fmt(value: float | None, scale: float = 1, digits: int = 1) -> str:
    return "–" if value is None else f"{value * scale:,.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| path | D one-way (ms) | asks ok | `dolphin ask` wall, median (s) | hop round trips over D=0 "
        "| round trips on the client's hop (flight clock) "
        "| first token after connect, median (ms) | client↔node round trips to first token over D=0 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['path']} | {row['delay_ms']:g} | {row['ok']}/{row['asks']} | {_fmt(row['wall_s'])} "
            f"| {_fmt(row['hop_round_trips'])} | {_fmt(row['client_hop_round_trips'])} "
            f"| {_fmt(row['first_token_after_connect_ms'], digits=0)} "
            f"| {_fmt(row['node_round_trips_to_first_token'], digits=2)} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (wall_axis, ttft_axis) = pyplot.subplots(1, 2, figsize=(10, 4))
    for path in sorted({row["path"] for row in rows}):
        mine = [row for row in rows if row["path"] == path and row["wall_s"] is not None]
        delays = [row["delay_ms"] for row in mine]
        wall_axis.plot(delays, [row["wall_s"] for row in mine], marker="o", label=path)
        ttft_axis.plot(
            delays, [row["first_token_after_connect_ms"] or math.nan for row in mine], marker="o", label=path
        )
    wall_axis.set(
        xlabel="one-way delay per hop (ms)", ylabel="dolphin ask wall, median (s)", title="cold ask"
    )
    ttft_axis.set(xlabel="one-way delay per hop (ms)", ylabel="ms", title="first token after connect")
    for axis in (wall_axis, ttft_axis):
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    pyplot.close(figure)


async def _measure(out: Path) -> dict:
    delays = [float(d) for d in _env_list("WAN_DELAYS_MS", "0,100,250,500")]
    asks = int(os.environ.get("WAN_ASKS", "3"))
    requests = int(os.environ.get("WAN_GATEWAY_REQUESTS", "5"))
    punch_delays = [float(d) for d in _env_list("WAN_PUNCH_DELAYS_MS", ",".join(f"{d:g}" for d in delays))]
    rate_kbit = os.environ.get("WAN_RATE_KBIT")
    timeout = float(os.environ.get("WAN_ASK_TIMEOUT_S", "180"))
    link_rate = float(rate_kbit) * 1000 / 8 if rate_kbit else math.inf
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dolphin-wan-") as scratch:
        base = Path(scratch)
        model_dir = base / "tiny"
        build_tiny_model(model_dir)
        benchmark: Path | None = None
        punched: list[dict] = []
        paths = _env_list("WAN_PATHS", "direct,relayed,punch")
        for path in paths:
            if path == "punch" and "relayed" in paths:
                continue  # on the relayed path's network, after its asks
            link = Link(0.0, link_rate)
            network_path = "relayed" if path == "punch" else path
            async with open_wan_network(
                base / path, network_path, model_dir, link, benchmark_from=benchmark
            ) as network:
                benchmark = benchmark or network.node.data_dir / BENCHMARK_FILE
                baseline = None
                for delay in delays if path != "punch" else []:
                    network.set_delay(delay)
                    results = [await ask_once(network, model_dir, timeout) for _ in range(asks)]
                    row = summarise(path, delay, results, baseline)
                    baseline = baseline or (row if delay == 0 else None)
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
                if network_path == "relayed" and "punch" in paths:
                    punched = await punch_rows(
                        network, base / "punch", model_dir, punch_delays, requests, timeout
                    )
    figures: dict = {"rows": rows, "rate_kbit": rate_kbit}
    if rows:
        (out / "wan.md").write_text(table(rows))
        plot(rows, out / "wan.png")
        figures |= {"table": str(out / "wan.md"), "plot": str(out / "wan.png")}
    if punched:
        (out / "wan_punch.md").write_text(punch_table(punched))
        figures |= {"punch_rows": punched, "punch_table": str(out / "wan_punch.md")}
    return figures


def run(out: Path) -> dict:
    return trio.run(_measure, out)
