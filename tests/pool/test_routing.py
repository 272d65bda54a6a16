"""The router, pure: eligibility, power of two choices, learning, the circuit breaker, stickiness."""

import collections
import random

import pytest

from pool.routing import BreakerSettings, Candidate, Preferences, Router

pytestmark = pytest.mark.unit


def _router(seed: int = 1, **options) -> Router:
    return Router(rng=random.Random(seed), **options)


def _nodes(*specs: dict) -> list[Candidate]:
    return [Candidate(peer_id=f"node-{i}", capacity=4, **spec) for i, spec in enumerate(specs)]


def _serve(router: Router, node: Candidate, *, now: float, tokens_per_s: float, ttft_s: float = 0.1) -> None:
    router.succeeded(node.peer_id, now=now, ttft_s=ttft_s, tokens=101, duration_s=ttft_s + 100 / tokens_per_s)


def test_preferences_filter_registration_bond_and_standing():
    nodes = [
        Candidate("unregistered"),
        Candidate("registered", registered=True),
        Candidate("bonded", registered=True, bonded=True),
        Candidate("good", registered=True, bonded=True, standing="good", suspicion=0.01),
        Candidate("suspect", registered=True, bonded=True, standing="suspect", suspicion=0.4),
        Candidate("excluded", registered=True, bonded=True, standing="excluded"),
        Candidate("banned", registered=True, bonded=True, standing="banned"),
        Candidate("draining", registered=True, bonded=True, capacity=0),
    ]
    router = _router()

    def allowed(**preferences) -> set[str]:
        return {n.peer_id for n in router.eligible(nodes, Preferences(**preferences), now=0)}

    everyone = {"unregistered", "registered", "bonded", "good", "suspect"}
    assert allowed() == everyone  # excluded, banned and draining nodes never
    assert allowed(nodes="registered") == everyone - {"unregistered"}
    assert allowed(nodes="bonded") == {"bonded", "good", "suspect"}
    assert allowed(min_standing="good") == {"good"}
    assert allowed(min_standing="suspect") == {"good", "suspect"}
    assert allowed(max_suspicion=0.1) == everyone - {"suspect"}
    assert allowed(only=frozenset({"registered", "banned"})) == {"registered"}  # pinned, bans still apply
    assert allowed(only=frozenset({"good"}), nodes="bonded") == {"good"}
    with pytest.raises(ValueError):
        Preferences(nodes="friends")


def test_no_eligible_node_gives_none_and_exclusions_are_honoured():
    router = _router()
    nodes = _nodes({}, {})
    assert router.choose([], now=0) is None
    assert router.choose(nodes, now=0, exclude={"node-0", "node-1"}) is None
    assert router.choose(nodes, now=0, exclude={"node-0"}).peer_id == "node-1"


def test_power_of_two_choices_sends_most_requests_to_the_faster_node_but_spreads_load():
    router = _router()
    nodes = _nodes(
        {"attested_tokens_per_s": 200.0}, {"attested_tokens_per_s": 100.0}, {"attested_tokens_per_s": 10.0}
    )
    counts = collections.Counter()
    in_flight = []
    for step in range(300):
        node = router.choose(nodes, now=step)
        counts[node.peer_id] += 1
        in_flight.append(node)
        if len(in_flight) > 12:  # requests finish in order, 12 at a time in flight
            done = in_flight.pop(0)
            speed = done.attested_tokens_per_s
            _serve(router, done, now=step, tokens_per_s=speed)
    assert counts["node-0"] > counts["node-1"] > counts["node-2"]
    assert counts["node-2"] < 0.1 * 300  # the slow node only when the others are much busier
    assert counts["node-1"] > 0.15 * 300  # the fastest does not take everything: load spreads


def test_sort_by_latency_prefers_the_quicker_first_token():
    router = _router()
    quick = Candidate("quick", capacity=4, attested_ttft_s=0.05, attested_tokens_per_s=10)
    fast = Candidate("fast", capacity=4, attested_ttft_s=2.0, attested_tokens_per_s=500)
    assert router.cost(quick, "latency") < router.cost(fast, "latency")
    assert router.cost(fast, "speed") < router.cost(quick, "speed")
    picks = {router.choose([quick, fast], Preferences(sort="latency"), now=0).peer_id for _ in range(10)}
    assert picks == {"quick"}


def test_observations_replace_attested_figures():
    router = _router()
    liar = Candidate("liar", capacity=4, attested_tokens_per_s=1000.0)
    honest = Candidate("honest", capacity=4, attested_tokens_per_s=100.0)
    assert router.cost(liar) < router.cost(honest)
    for step in range(5):
        router.choose([liar], now=step)
        _serve(router, liar, now=step, tokens_per_s=5.0)
        router.choose([honest], now=step)
        _serve(router, honest, now=step, tokens_per_s=100.0)
    assert router.cost(honest) < router.cost(liar)
    assert 4 < router.record("liar").tokens_per_s < 6


def test_a_hard_failure_opens_the_breaker_then_one_probe_closes_it():
    router = _router(breaker=BreakerSettings(cooldown=10, max_cooldown=40))
    (node,) = _nodes({})
    assert router.choose([node], now=0) is node
    router.failed(node.peer_id, now=0, hard=True)
    assert router.record(node.peer_id).breaker(5) == "open"
    assert router.choose([node], now=5) is None
    # Half-open after the cooldown: one probe, and nobody else until it reports.
    assert router.choose([node], now=10) is node
    assert router.choose([node], now=10) is None
    router.failed(node.peer_id, now=11)  # the probe failed: open again, for twice as long
    assert router.choose([node], now=25) is None
    assert router.choose([node], now=31) is node
    _serve(router, node, now=31, tokens_per_s=50)
    assert router.record(node.peer_id).breaker(31) == "closed"
    assert router.choose([node], now=31) is node and router.choose([node], now=31) is node


def test_refusals_open_the_breaker_only_when_they_repeat():
    router = _router(breaker=BreakerSettings(soft_failures=3, cooldown=10))
    (node,) = _nodes({})
    for _ in range(2):
        router.choose([node], now=0)
        router.failed(node.peer_id, now=0, hard=False)
    assert router.record(node.peer_id).breaker(0) == "closed"
    router.choose([node], now=0)
    router.failed(node.peer_id, now=0, hard=False)
    assert router.record(node.peer_id).breaker(0) == "open"


def test_error_rate_makes_a_flaky_node_costlier():
    router = _router(breaker=BreakerSettings(soft_failures=100))
    flaky, steady = _nodes({"attested_tokens_per_s": 50.0}, {"attested_tokens_per_s": 50.0})
    for _ in range(5):
        router.choose([flaky], now=0)
        router.failed(flaky.peer_id, now=0, hard=False)
    assert router.cost(flaky) > 2 * router.cost(steady)


def test_a_conversation_sticks_to_its_node_while_it_is_eligible():
    router = _router(seed=3)
    nodes = _nodes({}, {}, {})
    first = router.choose(nodes, now=0, conversation="chat-1")
    for _ in range(10):
        assert router.choose(nodes, now=0, conversation="chat-1") is first
    router.failed(first.peer_id, now=1)  # its breaker opens: the conversation moves on
    moved = router.choose(nodes, now=2, conversation="chat-1")
    assert moved is not None and moved is not first


def test_sticky_conversations_are_bounded():
    router = _router(max_conversations=3)
    nodes = _nodes({}, {})
    for index in range(10):
        router.choose(nodes, now=0, conversation=f"chat-{index}")
    assert list(router._sticky) == ["chat-7", "chat-8", "chat-9"]


def test_in_flight_counts_and_statistics():
    router = _router()
    (node,) = _nodes({})
    router.choose([node], now=0)
    router.choose([node], now=0)
    assert router.record(node.peer_id).in_flight == 2
    router.released(node.peer_id)
    _serve(router, node, now=1, tokens_per_s=20)
    stats = router.statistics(now=1)[node.peer_id]
    assert stats["in_flight"] == 0 and stats["successes"] == 1 and stats["breaker"] == "closed"
    router.forget(node.peer_id)
    assert router.statistics(now=1) == {}
