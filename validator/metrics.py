"""The validator's Prometheus metrics and its small HTTP app (/metrics, /health, and with a status model
/status and /dashboard) on 127.0.0.1.

Label values come from fixed vocabularies (check names, outcomes, standings), never from the network.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.dashboard import StatusSource, dashboard_routes
from protocols.messages import STANDINGS
from validator.checks import CHECKS

__all__ = ["ValidatorMetrics", "build_app"]

OUTCOMES = ("passed", "failed", "unanswered", "unchecked")


class ValidatorMetrics:
    """Counters and gauges of one validator; `render()` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.challenges = Counter(
            "dolphin_validator_challenges", "Challenges sent, by outcome", ["outcome"], registry=r
        )
        self.audits = Counter(
            "dolphin_validator_shared_answers",
            "Answers clients shared for audit, by outcome (passed, failed, unchecked, ignored, dropped)",
            ["outcome"],
            registry=r,
        )
        self.check_failures = Counter(
            "dolphin_validator_check_failures",
            "Failed checks of sampled answers, by check",
            ["check"],
            registry=r,
        )
        self.strikes_published = Counter(
            "dolphin_validator_strikes_published", "Strike reports this validator published", registry=r
        )
        self.strikes_received = Counter(
            "dolphin_validator_strikes_received",
            "Other validators' strikes, by whether re-checking their evidence reproduced them",
            ["reproduced"],
            registry=r,
        )
        self.bans = Counter("dolphin_validator_bans", "Nodes banned", registry=r)
        self.bans_refused = Counter(
            "dolphin_validator_ban_notices_refused",
            "Judgements of ban notices whose strikes did not add up to a ban (a notice that waits for its"
            " strikes is judged again after each)",
            registry=r,
        )
        self.slashes = Counter(
            "dolphin_validator_slashes_submitted", "Slashing decisions submitted", registry=r
        )
        self.in_flight = Gauge("dolphin_validator_challenges_in_flight", "Challenges in flight", registry=r)
        self.nodes = Gauge("dolphin_validator_nodes", "Nodes known, by standing", ["status"], registry=r)
        self.validator_set = Gauge(
            "dolphin_validator_set_members", "Members of the current validator set", registry=r
        )
        for outcome in OUTCOMES:
            self.challenges.labels(outcome)
        for check in (*CHECKS, "benchmark"):
            self.check_failures.labels(check)
        for reproduced in ("yes", "no"):
            self.strikes_received.labels(reproduced)
        for status in STANDINGS:
            self.nodes.labels(status)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def build_app(
    metrics: ValidatorMetrics, health: Callable[[], dict], status: StatusSource | None = None
) -> Starlette:
    """GET /metrics (Prometheus text) and GET /health (200 with `health()` as JSON); with `status` (the
    validator's status model, validator.status) also GET /status and the dashboard page (node.dashboard)."""

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def health_endpoint(request: Request) -> Response:
        return JSONResponse(health())

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/health", health_endpoint),
            *(dashboard_routes("validator", status) if status is not None else ()),
        ]
    )
