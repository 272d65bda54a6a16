"""The node's Prometheus metrics (prometheus-client), served at /metrics on the local API.

Each node has its own registry, so several nodes can live in one process (tests, the demo). Refusal
reasons are a small fixed vocabulary (`REFUSAL_REASONS`), never free text from the network, so a hostile
peer cannot blow up label cardinality.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from node.engines.base import EngineLoad

__all__ = ["CONTENT_TYPE_LATEST", "REFUSAL_REASONS", "NodeMetrics"]

REFUSAL_REASONS = (
    "oversized",  # the request is bigger than the node takes
    "malformed",  # cannot be decoded
    "undecryptable",  # not sealed to a key of ours, or does not authenticate
    "bad_signature",  # the request's envelope signature does not verify
    "expired",  # outside its validity window by our clock
    "replayed",  # its nonce was seen before
    "misaddressed",  # addressed to another node
    "bad_credit",  # a credit authorisation that does not verify or is for something else
    "unpaid",  # no covered credit, and the node's policy serves paid requests only
    "wrong_model",  # asks for a model this node does not serve
    "bad_request",  # the engine cannot serve it as asked (prompt too long, bad parameters)
    "draining",  # the node is shutting down
    "owner_busy",  # the machine's owner is using it (--yield-when-busy)
    "overloaded",  # too many requests are waiting already
    "engine_error",  # the engine failed while answering
)
THROUGHPUT_WINDOW_S = 10.0


class NodeMetrics:
    """Counters, gauges and histograms of one node; `render()` gives the Prometheus text format."""

    def __init__(self, engine_load: Callable[[], EngineLoad] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dolphin_node_requests", "Answers served, by source (network, local)", ["source"], registry=r
        )
        self.refusals = Counter(
            "dolphin_node_refusals", "Requests refused, by reason", ["reason"], registry=r
        )
        self.abandoned = Counter(
            "dolphin_node_abandoned", "Answers whose client went away before the end", registry=r
        )
        self.tokens = Counter(
            "dolphin_node_tokens",
            "Tokens processed, by direction (prompt, output)",
            ["direction"],
            registry=r,
        )
        self.receipts = Counter(
            "dolphin_node_receipts_stored", "Countersigned receipts committed to the ledger", registry=r
        )
        self.ttft = Histogram(
            "dolphin_node_time_to_first_token_seconds",
            "Time from accepting a request to its first token",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.tokens_per_second = Gauge(
            "dolphin_node_output_tokens_per_second",
            f"Output tokens per second over the last {THROUGHPUT_WINDOW_S:g} s",
            registry=r,
        )
        self.running = Gauge("dolphin_node_engine_running", "Answers the engine generates now", registry=r)
        self.queued = Gauge("dolphin_node_engine_waiting", "Requests waiting for an engine slot", registry=r)
        self.healthy = Gauge("dolphin_node_engine_healthy", "1 when the engine answers, else 0", registry=r)
        self.accepting = Gauge(
            "dolphin_node_accepting_network_requests", "1 when network requests are taken", registry=r
        )
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)  # every reason shows, at 0, from the start
        self._engine_load = engine_load
        self._recent: deque[tuple[float, int]] = deque()

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason if reason in REFUSAL_REASONS else "malformed").inc()

    def served(self, source: str, *, tokens_in: int, tokens_out: int, ttft_s: float | None) -> None:
        self.requests.labels(source).inc()
        self.tokens.labels("prompt").inc(tokens_in)
        self.tokens.labels("output").inc(tokens_out)
        if ttft_s is not None:
            self.ttft.labels(source).observe(ttft_s)

    def output_tokens(self, count: int) -> None:
        """Tokens just sent to a client, for the tokens-per-second gauge."""
        self._recent.append((time.monotonic(), count))

    def render(self) -> bytes:
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > THROUGHPUT_WINDOW_S:
            self._recent.popleft()
        self.tokens_per_second.set(sum(count for _, count in self._recent) / THROUGHPUT_WINDOW_S)
        if self._engine_load is not None:
            load = self._engine_load()
            self.running.set(load.running)
            self.queued.set(load.waiting)
            self.healthy.set(1 if load.healthy else 0)
        return generate_latest(self.registry)
