"""The gateway's Prometheus metrics (prometheus-client), served at /metrics.

Labels come from small fixed vocabularies (endpoints, status codes, attempt outcomes) or from the models
the gateway watches (at most `max_models`), never from free text a client sends.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ATTEMPT_OUTCOMES", "CONTENT_TYPE_LATEST", "GatewayMetrics"]

ATTEMPT_OUTCOMES = ("ok", "unreachable", "refused", "stalled", "lost", "check")


class GatewayMetrics:
    """Counters, gauges and histograms of one gateway; `render()` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "dolphin_gateway_requests",
            "API requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.attempts = Counter(
            "dolphin_gateway_node_attempts", "Node requests made, by how they ended", ["outcome"], registry=r
        )
        self.failovers = Counter(
            "dolphin_gateway_failovers", "Answers that went on on another node after one failed", registry=r
        )
        self.tokens = Counter(
            "dolphin_gateway_tokens",
            "Tokens in the nodes' signed receipts, by direction (prompt, completion)",
            ["direction"],
            registry=r,
        )
        self.ttft = Histogram(
            "dolphin_gateway_time_to_first_token_seconds",
            "Time from taking a request to its first token",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.in_flight = Gauge("dolphin_gateway_in_flight", "Answers being served now", registry=r)
        self.pool_nodes = Gauge(
            "dolphin_gateway_pool_nodes", "Live nodes per watched model", ["model"], registry=r
        )
        self.reports = Counter(
            "dolphin_gateway_reports", "Users' reports, by state (queued, published)", ["state"], registry=r
        )
        for outcome in ATTEMPT_OUTCOMES:
            self.attempts.labels(outcome)
        for direction in ("prompt", "completion"):
            self.tokens.labels(direction)

    def render(self, pools: dict[str, int]) -> bytes:
        """The text format; `pools` is each watched model's live node count now."""
        for model, nodes in pools.items():
            self.pool_nodes.labels(model).set(nodes)
        return generate_latest(self.registry)
