"""The rules of strikes as plain data: which user report a ban rests on, and awards that never exceed what
the caught node forfeits (so banning one's own throwaway nodes, or speaking first, never pays)."""

import dataclasses

import pytest

from pool.bans import BanRules, ban_shortfall
from protocols import envelope
from protocols import testing as pt
from protocols.inference import ClientExchange, NodeExchange
from protocols.keys import Identity
from protocols.messages import AnswerEvidence, StrikeReport, UserReport, eth_sign, evidence_hash
from validator.strikes import StrikeBook, StrikePolicy, ban_notice, report_rests_on, reward_rows
from validator.testing import NodeKeys

pytestmark = pytest.mark.unit

POD = 10**18
USER = pt.eth_account(40).address
VALIDATORS = [pt.eth_account(n) for n in (21, 22)]


def _served(keys: NodeKeys, prompt: str):
    """A finished exchange with the node of `keys`: (its signed receipt envelope, the user's report)."""
    session = Identity.generate()
    request = pt.make_request(keys.identity, prompt=prompt)
    client = ClientExchange(request, identity=session, node_encryption_key=keys.encryption.public_key)
    exchange = NodeExchange.accept(
        client.sealed_request, identity=keys.identity, encryption_keys=keys.encryption
    )
    client.receive(exchange.header())
    client.receive(exchange.chunk("Nonsense.", (5,), (-1,)))
    client.receive(
        exchange.end("stop", tokens_in=3, started_at_ms=client.sent_at_ms, first_token_ms=1, duration_ms=2)
    )
    report = UserReport(
        request_id=request.request_id,
        node_key=keys.identity.public_key,
        model=request.model,
        receipt=client.countersigned_receipt(),
        reason="the answer made no sense",
        reporter=USER,
    )
    return client.receipt.raw, envelope.open_signed(envelope.sign(report, session), UserReport)


def _answer(receipt: bytes) -> AnswerEvidence:
    return AnswerEvidence(
        request=b"", chunks=(), receipt=receipt, observed_first_token_ms=1, observed_duration_ms=2
    )


def test_a_report_rests_on_a_strike_only_when_it_reported_the_failing_answer():
    keys = NodeKeys()
    receipt, report = _served(keys, "first")
    other_receipt, _ = _served(keys, "second")
    assert report_rests_on(report, _answer(receipt))
    assert not report_rests_on(report, _answer(other_receipt))  # sniping: same node, another answer
    elsewhere, _ = _served(NodeKeys(), "first")
    assert not report_rests_on(report, _answer(elsewhere))


def _ban(epoch=3):
    node = NodeKeys().identity.public_key
    strikes = [
        eth_sign(
            StrikeReport,
            wallet,
            pt.TEST_DOMAIN,
            validator=wallet.address,
            node_key=node,
            operator=b"\2" * 20,
            model=pt.TEST_MODEL,
            epoch=epoch,
            reason="wrong_model",
            severity=8,
            evidence_hash=evidence_hash(()),
            evidence=(),
        )
        for wallet in VALIDATORS
    ]
    return ban_notice(strikes, epoch=epoch)


def test_catching_a_node_that_forfeits_nothing_pays_nothing():
    """Attack (ban farming): three throwaway unbonded cheaters, each reported by the attacker, paid it 150
    POD from the pool. A node with nothing slashable forfeits nothing here, so its ban pays nothing."""
    for _ in range(3):
        rows = reward_rows(
            _ban(), USER, forfeited=0, slash_reporter=None, validator_award=100 * POD, user_award=50 * POD
        )
        assert rows == []


def test_awards_are_paid_out_of_what_the_slash_left_and_never_twice():
    ban = _ban()
    first = ban.strikes[0].validator
    # The user took the slash's cut on chain; the first validator is paid from the rest, at most all of it.
    rows = reward_rows(
        ban, USER, forfeited=70 * POD, slash_reporter=USER, validator_award=100 * POD, user_award=50 * POD
    )
    assert [(r.account, r.role, r.amount, r.bonded) for r in rows] == [(first, "validator", 70 * POD, True)]
    # The validator took the cut: the user (whose report the ban rests on) is paid from the rest.
    rows = reward_rows(
        ban, USER, forfeited=500 * POD, slash_reporter=first, validator_award=100 * POD, user_award=50 * POD
    )
    assert [(r.account, r.role, r.amount) for r in rows] == [(USER, "user", 50 * POD)]
    rows = reward_rows(
        ban, USER, forfeited=120 * POD, slash_reporter=None, validator_award=100 * POD, user_award=50 * POD
    )
    assert sum(r.amount for r in rows) == 120 * POD  # never more than was forfeited


def test_a_validator_applies_the_chains_ban_rules_over_its_config():
    policy = StrikePolicy(ban_points=30, ban_validators=5, window_epochs=2, exclude_points=20)
    rules = BanRules(severities={**policy.severities, "too_slow": 6}, ban_points=12, window_epochs=7)
    book = StrikeBook(policy.with_rules(rules))
    assert book.policy.ban_rules() == rules
    assert book.policy.exclude_points == 12  # never above the ban threshold


def test_a_ban_lists_its_strikes_in_one_order_and_a_notice_in_another_is_refused():
    """Validators that heard the same strikes in different orders made notices with different evidence
    hashes and first strikers, and each signed a decision no quorum joined; a publisher ordering them to
    make itself the reporter would pick who is paid."""
    ban = _ban()
    assert list(ban.strikes) == sorted(ban.strikes, key=lambda s: (s.epoch, s.signature))
    assert ban_notice(list(reversed(ban.strikes)), epoch=ban.epoch) == ban
    rules = BanRules(ban_points=16, ban_validators=2)
    assert ban_shortfall(ban, rules, lambda _: True, lambda s: s.validator) is None
    reordered = dataclasses.replace(ban, strikes=tuple(reversed(ban.strikes)))
    assert "canonical order" in ban_shortfall(reordered, rules, lambda _: True, lambda s: s.validator)
