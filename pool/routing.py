"""Choosing a node for each request (the whitepaper's "Lighthouse"): pure, no I/O, the caller's clock.

What the router is told about each node (`Candidate`, built by the pool watcher from signed gossip and
the chain): attested speed and time to first token, capacity and load from heartbeats, registration and
bond, validators' standing. What it learns itself (`NodeRecord`): moving averages (EWMA) of time to first
token, output tokens per second and error rate from its own requests, its requests in flight, and a
circuit breaker.

Rules, in this order:
1. Eligible nodes: not in `exclude` (nodes this request already tried); capacity above 0 (a draining
   node or one yielding to its owner says 0); allowed by the preferences — registered only, bonded only,
   a minimum validator standing, a maximum suspicion — and never a node validators excluded or banned;
   breaker closed, or half-open with no probe out yet (then this request is the probe).
2. Stickiness: a request naming a conversation goes to the node that served that conversation last while
   that node is eligible, so the engine's prefix cache is reused.
3. Power of two choices (Mitzenmacher): two distinct eligible nodes drawn at random, the lower cost wins.
   It spreads load almost as well as asking everyone, without herding on the node that looks best now.

Cost is the expected seconds to finish a typical answer (`expected_tokens`) there now: the time to first
token plus the tokens over the per-stream speed ("balanced"; "speed" counts only the tokens, "latency"
only the first token), times 1 + how busy the node is (our requests in flight, or its reported load and
queue when larger, over its capacity), divided by its recent success rate. Observations beat
attestations, and a validator's attestation beats the node's own (the pool watcher picks which one).

Circuit breaker per node: a hard failure (unreachable, stalled, lost mid-answer, failed a check) opens it
at once; `soft_failures` refusals in a row (busy, draining) open it too. Open, the node gets no requests
for the cooldown, which doubles on each reopening up to `max_cooldown`; then one probe request is let
through (half-open): success closes it, failure reopens it.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BreakerSettings", "Candidate", "NodeRecord", "Preferences", "Router"]

Sort = Literal["balanced", "speed", "latency"]
Nodes = Literal["any", "registered", "bonded"]
STANDING_ORDER = ("good", "suspect", "excluded", "banned")  # best first
NEVER_ROUTED = frozenset({"excluded", "banned"})
DEFAULT_TTFT_S = 1.0
DEFAULT_TOKENS_PER_S = 10.0


@dataclass(frozen=True)
class Candidate:
    """A node as the pool watcher knows it now. `standing` is the validators' verdict (None: none yet);
    `suspicion` their probability that it cheats; attested figures come from signed benchmarks."""

    peer_id: str
    capacity: int = 1
    load: int = 0
    queued: int = 0
    registered: bool = False
    bonded: bool = False
    standing: str | None = None
    suspicion: float | None = None
    attested_tokens_per_s: float | None = None
    attested_ttft_s: float | None = None


@dataclass(frozen=True)
class Preferences:
    """What a request allows. `nodes`: any node, registered ones only, or those whose operator has an
    active bond; `min_standing`: "good" needs a validator's good verdict, "suspect" any verdict short of
    exclusion, None none at all; `max_suspicion` in [0, 1]; `sort`: see the module docstring; `only`: the
    peer ids a request may go to (empty: any), which the other rules still apply to."""

    nodes: Nodes = "any"
    min_standing: Literal["good", "suspect"] | None = None
    max_suspicion: float | None = None
    sort: Sort = "balanced"
    only: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.nodes not in ("any", "registered", "bonded"):
            raise ValueError(f"nodes must be any, registered or bonded, not {self.nodes!r}")
        if self.min_standing not in (None, "good", "suspect"):
            raise ValueError(f"min_standing must be good or suspect, not {self.min_standing!r}")
        if self.max_suspicion is not None and not 0 <= self.max_suspicion <= 1:
            raise ValueError("max_suspicion must be in [0, 1]")
        if self.sort not in ("balanced", "speed", "latency"):
            raise ValueError(f"sort must be balanced, speed or latency, not {self.sort!r}")

    def allows(self, node: Candidate) -> bool:
        if node.standing in NEVER_ROUTED:
            return False
        if self.only and node.peer_id not in self.only:
            return False
        if self.nodes == "registered" and not node.registered:
            return False
        if self.nodes == "bonded" and not (node.registered and node.bonded):
            return False
        if self.min_standing is not None and (
            node.standing is None
            or STANDING_ORDER.index(node.standing) > STANDING_ORDER.index(self.min_standing)
        ):
            return False
        return self.max_suspicion is None or (node.suspicion or 0.0) <= self.max_suspicion


@dataclass(frozen=True)
class BreakerSettings:
    soft_failures: int = 3
    cooldown: float = 5.0
    max_cooldown: float = 120.0


@dataclass
class NodeRecord:
    """What the router observed of one node."""

    ttft_s: float | None = None
    tokens_per_s: float | None = None
    error_rate: float = 0.0
    in_flight: int = 0
    successes: int = 0
    failures: int = 0
    soft_failures_in_row: int = 0
    open_until: float | None = None  # breaker open until then (None: closed)
    reopenings: int = 0
    probing: bool = False

    def breaker(self, now: float) -> str:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half-open"


@dataclass
class Router:
    """Chooses nodes and learns from outcomes. `rng` makes choices reproducible in tests."""

    expected_tokens: int = 256
    alpha: float = 0.2
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    rng: random.Random = field(default_factory=random.Random)
    max_conversations: int = 10_000  # sticky conversations remembered, least recently used dropped first
    _records: dict[str, NodeRecord] = field(default_factory=dict, init=False)
    _sticky: OrderedDict[str, str] = field(default_factory=OrderedDict, init=False)

    def record(self, peer_id: str) -> NodeRecord:
        return self._records.setdefault(peer_id, NodeRecord())

    # ---- choosing ----
    def eligible(
        self,
        candidates: Sequence[Candidate],
        preferences: Preferences,
        *,
        now: float,
        exclude: Collection[str] = (),
    ) -> list[Candidate]:
        """The nodes a request with these preferences may go to now (rule 1)."""
        chosen = []
        for node in candidates:
            if node.peer_id in exclude or node.capacity <= 0 or not preferences.allows(node):
                continue
            record = self._records.get(node.peer_id)
            state = record.breaker(now) if record is not None else "closed"
            if state == "open" or (state == "half-open" and record is not None and record.probing):
                continue
            chosen.append(node)
        return chosen

    def choose(
        self,
        candidates: Sequence[Candidate],
        preferences: Preferences = Preferences(),
        *,
        now: float,
        exclude: Collection[str] = (),
        conversation: str | None = None,
    ) -> Candidate | None:
        """The node for the next request, or None when no node is eligible. Counts it as in flight: report
        the outcome with `succeeded` or `failed`."""
        eligible = self.eligible(candidates, preferences, now=now, exclude=exclude)
        if not eligible:
            return None
        sticky = self._sticky.get(conversation) if conversation is not None else None
        chosen = next((node for node in eligible if node.peer_id == sticky), None)
        if chosen is None:
            pair = self.rng.sample(eligible, 2) if len(eligible) > 1 else eligible
            chosen = min(pair, key=lambda node: (self.cost(node, preferences.sort), node.peer_id))
        record = self.record(chosen.peer_id)
        if record.breaker(now) == "half-open":
            record.probing = True
        record.in_flight += 1
        if conversation is not None:
            self._sticky[conversation] = chosen.peer_id
            self._sticky.move_to_end(conversation)
            while len(self._sticky) > self.max_conversations:
                self._sticky.popitem(last=False)
        return chosen

    def cost(self, node: Candidate, sort: Sort = "balanced") -> float:
        """Expected seconds to finish a typical answer on `node` now (module docstring)."""
        record = self._records.get(node.peer_id) or NodeRecord()
        ttft = record.ttft_s or node.attested_ttft_s or DEFAULT_TTFT_S
        tokens_per_s = record.tokens_per_s or node.attested_tokens_per_s or DEFAULT_TOKENS_PER_S
        generating = self.expected_tokens / max(tokens_per_s, 1e-3)
        seconds = {"balanced": ttft + generating, "speed": generating, "latency": ttft}[sort]
        # Our own requests are part of what the node reports as its load and queue (heartbeats lag):
        # the larger of the two counts them once.
        busy = max(record.in_flight, node.load + node.queued) / max(node.capacity, 1)
        return seconds * (1 + busy) / max(1.0 - record.error_rate, 0.05)

    # ---- learning ----
    def succeeded(
        self, peer_id: str, *, now: float, ttft_s: float | None, tokens: int, duration_s: float
    ) -> None:
        """A request to `peer_id` finished well: `tokens` output tokens in `duration_s`, the first after
        `ttft_s` (None when it sent none)."""
        record = self.record(peer_id)
        record.in_flight = max(0, record.in_flight - 1)
        record.successes += 1
        record.error_rate = self._average(record.error_rate, 0.0)
        if ttft_s is not None:
            record.ttft_s = self._average(record.ttft_s, ttft_s)
            if tokens > 1 and duration_s > ttft_s:
                record.tokens_per_s = self._average(record.tokens_per_s, (tokens - 1) / (duration_s - ttft_s))
        record.soft_failures_in_row = 0
        record.open_until, record.reopenings, record.probing = None, 0, False

    def failed(self, peer_id: str, *, now: float, hard: bool = True) -> None:
        """A request to `peer_id` failed; `hard` when the node itself looks broken (module docstring)."""
        record = self.record(peer_id)
        record.in_flight = max(0, record.in_flight - 1)
        record.failures += 1
        record.error_rate = self._average(record.error_rate, 1.0)
        record.soft_failures_in_row = 0 if hard else record.soft_failures_in_row + 1
        if hard or record.probing or record.soft_failures_in_row >= self.breaker.soft_failures:
            cooldown = min(self.breaker.cooldown * 2**record.reopenings, self.breaker.max_cooldown)
            record.open_until = now + cooldown
            record.reopenings += 1
            record.soft_failures_in_row = 0
        record.probing = False

    def released(self, peer_id: str) -> None:
        """A request to `peer_id` ended without saying anything about the node (our caller went away)."""
        record = self.record(peer_id)
        record.in_flight = max(0, record.in_flight - 1)
        record.probing = False

    def forget(self, peer_id: str) -> None:
        """Drop what was learnt about a node that left the pool."""
        self._records.pop(peer_id, None)
        for conversation in [c for c, p in self._sticky.items() if p == peer_id]:
            del self._sticky[conversation]

    def _average(self, current: float | None, sample: float) -> float:
        return sample if current is None else current + self.alpha * (sample - current)

    def statistics(self, now: float) -> dict[str, dict]:
        """Per node: breaker state, in flight, EWMAs and counts (for metrics and logs)."""
        return {
            peer_id: {
                "breaker": record.breaker(now),
                "in_flight": record.in_flight,
                "ttft_s": record.ttft_s,
                "tokens_per_s": record.tokens_per_s,
                "error_rate": round(record.error_rate, 4),
                "successes": record.successes,
                "failures": record.failures,
            }
            for peer_id, record in sorted(self._records.items())
        }
