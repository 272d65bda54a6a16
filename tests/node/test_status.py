"""The node's status model, pure parts: rates from totals, and which strikes the dashboard shows."""

import pytest

from chain.merkle import RewardsTree
from node.metrics import NodeMetrics
from node.status import ChainFacts, RateHistory, StrikeWatch, claimable, estimated_reward, read_counters
from p2p import GossipMessage, Verdict
from protocols import envelope
from protocols import testing as pt
from protocols.eth import TypedDomain
from protocols.ids import STRIKES_TOPIC
from protocols.keys import peer_id_from_public_key, peer_id_to_text
from protocols.messages import StrikeReport, eth_sign, evidence_hash

pytestmark = pytest.mark.unit

SLASHING = TypedDomain("Dolphin Network", "1", 31337, b"\4" * 20)
VALIDATOR, STRANGER = pt.eth_account(1), pt.eth_account(2)
OUR_NODE, OTHER_NODE = b"\1" * 32, b"\2" * 32


def _totals(requests=0.0, output_tokens=0.0, ttft_sum=0.0, ttft_count=0.0):
    return {
        "requests": requests,
        "output_tokens": output_tokens,
        "ttft_sum": ttft_sum,
        "ttft_count": ttft_count,
    }


def test_rates_are_deltas_over_the_interval_and_a_reset_starts_a_new_baseline():
    history = RateHistory(capacity=3, means={"ttft_ms": ("ttft_sum", "ttft_count", 1000.0)})
    first = history.record(10.0, 1000, _totals(), {"queued": 0})
    assert first == {
        "at_ms": 1000,
        "requests_per_s": 0.0,
        "output_tokens_per_s": 0.0,
        "ttft_ms": None,
        "queued": 0,
    }
    second = history.record(12.0, 3000, _totals(4, 100, 0.5, 2), {"queued": 3})
    assert second["requests_per_s"] == 2.0 and second["output_tokens_per_s"] == 50.0
    assert second["ttft_ms"] == pytest.approx(250.0) and second["queued"] == 3
    quiet = history.record(13.0, 4000, _totals(4, 100, 0.5, 2), {"queued": 0})
    assert (quiet["requests_per_s"], quiet["ttft_ms"]) == (0.0, None)
    restarted = history.record(14.0, 5000, _totals(1, 5, 0.1, 1), {"queued": 0})
    assert restarted["requests_per_s"] == 0.0 and restarted["ttft_ms"] is None  # counters went down
    assert [s["at_ms"] for s in history.samples()] == [3000, 4000, 5000]  # bounded


def test_counters_are_read_back_from_the_metrics_registry():
    metrics = NodeMetrics()
    metrics.served("network", tokens_in=7, tokens_out=5, ttft_s=0.2)
    metrics.served("local", tokens_in=3, tokens_out=2, ttft_s=0.4)
    metrics.refused("unpaid")
    metrics.refused("not a reason")  # counted as malformed, as /metrics does
    counters = read_counters(metrics)
    assert counters["requests"] == {"network": 1.0, "local": 1.0}
    assert counters["tokens"] == {"prompt": 10.0, "output": 7.0}
    assert counters["refusals"]["unpaid"] == 1.0 and counters["refusals"]["malformed"] == 1.0
    assert counters["ttft_count"] == 2.0 and counters["ttft_sum"] == pytest.approx(0.6)


def _strike(wallet, node_key=OUR_NODE, reason="too_slow", domain=SLASHING):
    evidence = (b"receipt-1", b"answer-1")
    return eth_sign(
        StrikeReport,
        wallet,
        domain,
        validator=wallet.address,
        node_key=node_key,
        operator=b"\7" * 20,
        model=b"\5" * 32,
        epoch=12,
        reason=reason,
        severity=3,
        evidence_hash=evidence_hash(evidence),
        evidence=evidence,
    )


def _gossip(strike, identity_n=7) -> GossipMessage:
    identity = pt.identity(identity_n)
    origin = peer_id_to_text(peer_id_from_public_key(identity.public_key))
    return GossipMessage(STRIKES_TOPIC, envelope.sign(strike, identity), origin, origin, b"")


def _watch(validators):
    return StrikeWatch(
        OUR_NODE, SLASHING, lambda address: None if validators is None else address in validators
    )


def test_a_current_validators_strike_against_us_is_shown_with_its_evidence_hash():
    watch = _watch({VALIDATOR.address})
    strike = _strike(VALIDATOR)
    assert watch.validate(_gossip(strike)) is Verdict.ACCEPT
    [shown] = watch.strikes()
    assert shown["validator"] == "0x" + VALIDATOR.address.hex() and shown["reason"] == "too_slow"
    assert shown["evidence_hash"] == strike.evidence_hash.hex() and shown["evidence_items"] == 2
    assert watch.validate(_gossip(strike, identity_n=8)) is Verdict.ACCEPT  # the same strike, relayed again
    assert len(watch.strikes()) == 1
    # Strikes against other nodes travel on, but are not ours to show.
    assert (
        watch.validate(_gossip(_strike(VALIDATOR, node_key=OTHER_NODE, reason="wrong_model")))
        is Verdict.ACCEPT
    )
    assert [s["reason"] for s in watch.strikes()] == ["too_slow"]


def test_attack_a_forged_strike_cannot_alarm_the_operator():
    """A peer that is not a validator signs a strike against our node: rejected, and never shown (an
    operator told to re-import a model or restart on a stranger's word is a denial of service)."""
    watch = _watch({VALIDATOR.address})
    assert watch.validate(_gossip(_strike(STRANGER, reason="wrong_model"))) is Verdict.REJECT
    # A validator's real strike signed under another domain (another chain or contract) does not count.
    other = TypedDomain("Dolphin Network", "1", 1, b"\4" * 20)
    assert watch.validate(_gossip(_strike(VALIDATOR, domain=other))) is Verdict.REJECT
    assert watch.strikes() == []


def test_before_the_validator_set_is_known_strikes_are_neither_trusted_nor_punished():
    watch = _watch(None)
    assert watch.validate(_gossip(_strike(VALIDATOR))) is Verdict.IGNORE
    assert watch.strikes() == []


def _facts(registered: bool) -> ChainFacts:
    return ChainFacts(
        block=1,
        registered=registered,
        bond=0,
        rewards_claimed=0,
        active_root_epoch=0,
        active_root=b"\0" * 32,
        price_per_million=2_000_000,  # 2 units of the payment token (6 decimals) per million tokens
        emission_revenue_bps=5000,
        validators=frozenset(),
    )


def test_the_estimate_is_half_the_paid_revenue_and_nothing_for_an_unregistered_node():
    assert estimated_reward(1_500_000, _facts(True)) == {
        "paid_revenue": "3000000",
        "base_reward_value_at_most": "1500000",
    }
    assert estimated_reward(1_500_000, _facts(False))["base_reward_value_at_most"] == "0"
    assert estimated_reward(333, _facts(True)) == {"paid_revenue": "666", "base_reward_value_at_most": "333"}


def test_what_is_claimable_is_the_cumulative_amount_less_what_was_claimed():
    operator, other = "0x" + "ab" * 20, "0x" + "cd" * 20
    tree = RewardsTree.build({operator: 5 * 10**18, other: 10**18})
    assert claimable(tree, operator.upper().replace("0X", "0x"), 0) == 5 * 10**18
    assert claimable(tree, operator, 2 * 10**18) == 3 * 10**18
    assert claimable(tree, operator, 5 * 10**18) == 0
    assert claimable(tree, "0x" + "ef" * 20, 0) == 0  # not in the tree: nothing to claim
