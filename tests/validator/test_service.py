"""Several validators in one process, gossiping through a local bus with the real topic validators: honest
nodes stay in good standing; a cheat is struck, re-verified, excluded and banned; forged and foreign
strikes count for nothing; a ban needs several validators; state survives a restart."""

import contextlib
import dataclasses

import pytest
import trio
import trio_asyncio

from chain.quorum import QuorumRule
from pool.bans import DEFAULT_SEVERITIES
from protocols import envelope
from protocols import testing as pt
from protocols.ids import BANS_TOPIC, REPORTS_TOPIC, STRIKES_TOPIC
from protocols.keys import Identity
from protocols.messages import BanNotice, StrikeReport, UserReport, eth_sign, evidence_hash
from tests.validator.cheats import modified_engine
from validator.challenges import Challenge
from validator.service import Validator
from validator.state import open_state
from validator.strikes import StrikePolicy, ban_notice, decision_fields, user_reporter
from validator.testing import LocalBus, NodeKeys, answer_in_process

pytestmark = [pytest.mark.integration, pytest.mark.trio]

CHALLENGES = [
    Challenge("chat", (("user", "Tell me about the sea."),), max_tokens=24),
    Challenge("code", (("user", "Write a Python function that reverses a string."),), max_tokens=24),
    Challenge("chat", (("user", "hi"),), max_tokens=24, temperature=0.7, top_p=0.9, seed=5),
]
WALLETS = [pt.eth_account(n) for n in (21, 22, 23)]


@contextlib.asynccontextmanager
async def _validators(tmp_path, reference, thresholds, *, count=3, members=None, bus=None, policy=None):
    """`count` validators with their own state on one bus; the set is `members` (default: all of them)."""
    bus = bus or LocalBus()
    wallets = WALLETS[:count]
    view = QuorumRule.equal_weights([w.address for w in (members or wallets)])
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(trio_asyncio.open_loop())
        validators = []
        for index, wallet in enumerate(wallets):
            state = await stack.enter_async_context(open_state(tmp_path / f"validator-{index}"))
            peer = Identity(bytes([index + 1]) * 32)
            validator = Validator(
                peer=peer,
                wallet=wallet,
                domain=pt.TEST_DOMAIN,
                reference=reference,
                thresholds=thresholds,
                state=state,
                publish=bus.publisher(peer),
                validators=view,
                policy=policy,
                decision_settle_s=0,
            )
            await validator.load()
            bus.join(validator)
            validators.append(validator)
        yield bus, validators


def _strike(validator, answer, reason="wrong_model"):
    """A strike report by `validator` about `answer`'s node, whatever the answer shows."""
    evidence = (answer.encoded_evidence(),)
    return eth_sign(
        StrikeReport,
        validator.wallet,
        validator.domain,
        validator=validator.address,
        node_key=answer.node_key,
        operator=b"\0" * 20,
        model=answer.request.model,
        epoch=validator.epoch,
        reason=reason,
        severity=8,
        evidence_hash=evidence_hash(evidence),
        evidence=evidence,
    )


async def _judge(validator, engine, reference, keys, challenges=CHALLENGES):
    verdicts = []
    for challenge in challenges:
        answer = await answer_in_process(engine, challenge, model=reference.model_id, keys=keys)
        validator.node_seen(keys.identity.public_key, None)
        verdicts.append(await validator.judge(answer))
    return verdicts


@pytest.fixture(scope="module")
def cheat_engine(tiny_model_dir):
    engine = modified_engine(tiny_model_dir, "other-seed", max_batch=4)
    yield engine
    engine.close()


async def test_honest_nodes_stay_in_good_standing(tmp_path, honest_engine, reference, thresholds):
    keys = NodeKeys()
    async with _validators(tmp_path, reference, thresholds) as (bus, validators):
        async with trio.open_nursery() as nursery:  # judged by all three at once, as under load
            for validator in validators:
                nursery.start_soon(_judge, validator, honest_engine, reference, keys)
        assert bus.count(STRIKES_TOPIC) == 0
        node = keys.identity.public_key
        for validator in validators:
            assert validator.status(node) == "good"
            (standing,) = [envelope.open_signed(data).message for data in await validator.standings()]
            assert (standing.checks, standing.failures, standing.status) == (3, 0, "good")
            assert standing.suspicion_micro < 20_000  # below the prior after three passes


async def test_a_cheat_is_struck_reverified_excluded_then_banned(
    tmp_path, cheat_engine, reference, thresholds
):
    keys = NodeKeys()
    node = keys.identity.public_key
    async with _validators(tmp_path, reference, thresholds) as (bus, (first, second, third)):
        (verdict,) = await _judge(first, cheat_engine, reference, keys, CHALLENGES[:1])
        assert verdict.strike is not None and bus.count(STRIKES_TOPIC) == 1
        # The others re-ran the checks on the evidence and counted the strike: one validator's strikes
        # exclude the node, but cannot ban it.
        for validator in (first, second, third):
            assert validator.status(node) == "excluded"
        assert bus.count(BANS_TOPIC) == 0
        await _judge(first, cheat_engine, reference, keys, CHALLENGES[1:2])
        assert bus.count(BANS_TOPIC) == 0  # still one validator
        await _judge(second, cheat_engine, reference, keys, CHALLENGES[:1])
        assert bus.count(BANS_TOPIC) == 1
        for validator in (first, second, third):
            assert validator.status(node) == "banned"
        notice = envelope.open_signed(next(d for t, d in bus.published if t == BANS_TOPIC), BanNotice).message
        assert notice.node_key == node and notice.until_epoch == 0
        assert {s.validator for s in notice.strikes} == {first.address, second.address}
        assert all(not s.evidence for s in notice.strikes)  # evidence stays with the strikes


async def test_a_validator_that_joins_late_upholds_the_ban_when_its_striker_has_gone(
    tmp_path, cheat_engine, reference, thresholds
):
    # Gossip is not replayed: a validator started after the strikes, once the validator that published
    # the first strike and the ban is gone, learns of them only from the others' republications. When each
    # republished only its own, it could uphold no notice built on them and signed a decision no quorum
    # joined (three validators started seconds apart: three notices, one signature each).
    keys = NodeKeys()
    node = keys.identity.public_key
    async with _validators(tmp_path, reference, thresholds) as (bus, (first, second, third)):
        bus.members.remove(third)  # not started yet
        await _judge(first, cheat_engine, reference, keys, CHALLENGES[:1])
        await _judge(second, cheat_engine, reference, keys, CHALLENGES[:1])
        assert first.status(node) == second.status(node) == "banned"
        held = second._bans[node]
        # Whichever of the two published the notice both keep (the lowest hash) goes; the other stays.
        gone, stays = (first, second) if held.signer == first.peer.public_key else (second, first)
        assert stays._bans[node].raw == gone._bans[node].raw == held.raw
        bus.members.remove(gone)
        bus.join(third)
        assert third.status(node) == "good"
        await stays.republish()
        assert third.status(node) == "banned"
        # The third may have published a notice of its own on the same strikes: in their canonical order,
        # it is the same ban, and both sign one decision on it.
        assert third._bans[node].message == stays._bans[node].message


async def test_a_strike_without_a_reproducible_failure_does_not_count(
    tmp_path, honest_engine, reference, thresholds
):
    keys = NodeKeys()
    async with _validators(tmp_path, reference, thresholds) as (bus, (liar, honest, _)):
        answer = await answer_in_process(honest_engine, CHALLENGES[0], model=reference.model_id, keys=keys)
        strike = _strike(liar, answer)
        await bus.publish_as(liar.peer, STRIKES_TOPIC, envelope.sign(strike, liar.peer))
        assert honest.book.points(keys.identity.public_key, honest.epoch) == 0
        assert honest.status(keys.identity.public_key) == "good"


async def test_forged_and_foreign_strikes_are_rejected(tmp_path, cheat_engine, reference, thresholds):
    keys = NodeKeys()
    node = keys.identity.public_key
    async with _validators(tmp_path, reference, thresholds, count=3, members=WALLETS[:2]) as (
        bus,
        validators,
    ):
        member, other_member, outsider = validators
        # A validator outside the set finds a real cheat: it does not strike (it would not count).
        (verdict,) = await _judge(outsider, cheat_engine, reference, keys, CHALLENGES[:1])
        assert verdict.strike is not None and bus.count(STRIKES_TOPIC) == 0
        # Nor does a strike it signs anyway.
        answer = await answer_in_process(cheat_engine, CHALLENGES[0], model=reference.model_id, keys=keys)
        await bus.publish_as(
            outsider.peer, STRIKES_TOPIC, envelope.sign(_strike(outsider, answer), outsider.peer)
        )
        assert [v.name for t, v in bus.verdicts if t == STRIKES_TOPIC] == ["REJECT", "REJECT"]
        assert member.book.points(node, member.epoch) == other_member.book.points(node, member.epoch) == 0
        # A member's strike, then a copy with a field changed after signing: rejected before anyone looks.
        await _judge(member, cheat_engine, reference, keys, CHALLENGES[:1])
        genuine_envelope = [data for topic, data in bus.published if topic == STRIKES_TOPIC][-1]
        genuine = envelope.open_signed(genuine_envelope, StrikeReport).message
        counted = other_member.book.points(node, member.epoch)
        assert counted == member.policy.severity(genuine.reason)
        rejected = sum(v.name == "REJECT" for _, v in bus.verdicts)
        for forged in (
            dataclasses.replace(genuine, severity=10),
            dataclasses.replace(genuine, epoch=genuine.epoch + 1),
        ):
            await bus.publish_as(member.peer, STRIKES_TOPIC, envelope.sign(forged, member.peer))
        assert (
            sum(v.name == "REJECT" for _, v in bus.verdicts) == rejected + 4
        )  # two forgeries, two receivers
        # The genuine envelope published by another peer (stolen): rejected too.
        await bus.publish_as(Identity.generate(), STRIKES_TOPIC, genuine_envelope)
        assert sum(v.name == "REJECT" for _, v in bus.verdicts) == rejected + 7
        assert other_member.book.points(node, member.epoch) == counted


async def test_a_ban_notice_needs_strikes_of_several_validators(
    tmp_path, cheat_engine, reference, thresholds
):
    keys = NodeKeys()
    async with _validators(tmp_path, reference, thresholds) as (bus, (first, second, third)):
        await _judge(first, cheat_engine, reference, keys, CHALLENGES[:2])
        own = [s for s, *_ in await first.state.strikes()]
        alone = ban_notice(own, epoch=first.epoch)
        await bus.publish_as(first.peer, BANS_TOPIC, envelope.sign(alone, first.peer))
        assert second.status(keys.identity.public_key) != "banned"
        assert third.status(keys.identity.public_key) != "banned"


async def test_an_outsiders_notice_of_downgraded_strikes_bans_no_one(
    tmp_path, cheat_engine, reference, thresholds
):
    """Attack: validators used to record any notice whose strikes they had counted, at whatever reason
    the strikes claimed. Here one strike claims `fabricated_output` (9 points) but every re-check finds
    `wrong_model` (3 under these rules): 3 + 3 does not ban, whoever stitches the two into a notice."""
    keys = NodeKeys()
    node = keys.identity.public_key
    policy = StrikePolicy(severities={**DEFAULT_SEVERITIES, "wrong_model": 3})
    async with _validators(tmp_path, reference, thresholds, policy=policy) as (bus, (first, second, third)):
        await _judge(first, cheat_engine, reference, keys, CHALLENGES[:1])
        answer = await answer_in_process(cheat_engine, CHALLENGES[1], model=reference.model_id, keys=keys)
        inflated = _strike(second, answer, reason="fabricated_output")
        await bus.publish_as(second.peer, STRIKES_TOPIC, envelope.sign(inflated, second.peer))
        assert third.book.points(node, third.epoch) == 3 + 3  # counted, downgraded to wrong_model
        assert bus.count(BANS_TOPIC) == 0  # no validator finds a ban due
        honest = next(s for s in third.book.strikes(node, third.epoch) if s.validator == first.address)
        outsider = Identity.generate()
        notice = ban_notice([honest, inflated], epoch=third.epoch)
        await bus.publish_as(outsider, BANS_TOPIC, envelope.sign(notice, outsider))
        # Routers cannot re-run the checks and take the claimed reasons (12 points); validators do not.
        assert [v.name for t, v in bus.verdicts if t == BANS_TOPIC] == ["ACCEPT"] * 3
        assert "banned" not in {v.status(node) for v in (first, second, third)}
        assert all(node not in v._bans for v in (first, second, third))


async def test_state_survives_a_restart(tmp_path, cheat_engine, reference, thresholds):
    keys = NodeKeys()
    node = keys.identity.public_key
    async with _validators(tmp_path, reference, thresholds) as (_, (first, second, _third)):
        await _judge(first, cheat_engine, reference, keys, CHALLENGES[:1])
        await _judge(second, cheat_engine, reference, keys, CHALLENGES[:1])
        suspicion = first.suspicion(node).probability
    async with _validators(tmp_path, reference, thresholds) as (_, (first, second, third)):
        assert first.status(node) == second.status(node) == third.status(node) == "banned"
        assert first.suspicion(node).probability == pytest.approx(suspicion)
        assert (await first.state.check_counts(node, first.epoch)) == (1, 1)


async def test_a_user_report_raises_suspicion_but_a_sniped_report_earns_nothing(
    tmp_path, cheat_engine, reference, thresholds
):
    """Attack (report sniping): the earliest report naming a node took the reporter's cut of any later
    slash, whatever answer it was about. Now a strike carries a report only when its failing answer is the
    reported one; this report is about another answer, so the ban's reporter is the first validator."""
    from protocols.inference import ClientExchange, NodeExchange

    keys = NodeKeys()
    node = keys.identity.public_key
    user_wallet = pt.eth_account(40).address
    async with _validators(tmp_path, reference, thresholds) as (bus, (first, second, third)):
        # The user had an answer from the node and countersigned its receipt; the report proves that much.
        session = Identity.generate()
        request = pt.make_request(keys.identity, model=reference.model_id)
        client = ClientExchange(request, identity=session, node_encryption_key=keys.encryption.public_key)
        exchange = NodeExchange.accept(
            client.sealed_request, identity=keys.identity, encryption_keys=keys.encryption
        )
        client.receive(exchange.header())
        client.receive(exchange.chunk("Nonsense.", (5,), (-1,)))
        client.receive(
            exchange.end(
                "stop", tokens_in=3, started_at_ms=client.sent_at_ms, first_token_ms=1, duration_ms=2
            )
        )
        report = UserReport(
            request_id=request.request_id,
            node_key=node,
            model=reference.model_id,
            receipt=client.countersigned_receipt(),
            reason="the answer made no sense",
            reporter=user_wallet,
        )
        before = first.suspicion(node).probability
        await bus.publish_as(session, REPORTS_TOPIC, envelope.sign(report, session))
        assert first.suspicion(node).probability > before
        forged = dataclasses.replace(report, node_key=NodeKeys().identity.public_key)
        await bus.publish_as(session, REPORTS_TOPIC, envelope.sign(forged, session))
        assert [v.name for t, v in bus.verdicts if t == REPORTS_TOPIC][-1] == "REJECT"
        await _judge(first, cheat_engine, reference, keys, CHALLENGES[:1])
        await _judge(second, cheat_engine, reference, keys, CHALLENGES[:1])
        assert third.status(node) == "banned"
        ban = third._bans[node]
        for strike in ban.message.strikes:
            full = third._full_strikes[strike.signature]
            assert len(full.evidence) == 1 and user_reporter(full) is None  # the report is not evidence
        fields = decision_fields(ban, third._full_strikes, slash_bps=5000, epoch_seconds=third.epoch_seconds)
        assert fields.reporter == ban.message.strikes[0].validator != user_wallet


async def test_answers_users_shared_are_checked_once_and_a_cheat_on_them_is_banned(
    tmp_path, honest_engine, cheat_engine, reference, thresholds
):
    """Organic audits: a user's real answer, shared with one validator, is checked like a challenge; a
    failure is a strike the others re-verify, and two validators' strikes ban the node. An honest answer
    shared changes nothing; one answer shared twice is checked once; broken evidence is ignored."""
    keys = NodeKeys()
    node = keys.identity.public_key
    async with _validators(tmp_path, reference, thresholds) as (bus, (first, second, third)):
        honest = await answer_in_process(honest_engine, CHALLENGES[0], model=reference.model_id, keys=keys)
        verdict = await first.on_shared_answer(honest.encoded_evidence())
        assert verdict is not None and not verdict.failed and bus.count(STRIKES_TOPIC) == 0
        cheated = [
            await answer_in_process(cheat_engine, challenge, model=reference.model_id, keys=keys)
            for challenge in CHALLENGES[:2]
        ]
        verdict = await first.on_shared_answer(cheated[0].encoded_evidence())
        assert verdict is not None and verdict.strike is not None
        assert await first.on_shared_answer(cheated[0].encoded_evidence()) is None  # seen: not again
        assert await second.on_shared_answer(b"\x93garbage") is None
        assert bus.count(STRIKES_TOPIC) == 1 and first.status(node) != "banned"
        await second.on_shared_answer(cheated[1].encoded_evidence())
        assert bus.count(STRIKES_TOPIC) == 2
        assert all(v.status(node) == "banned" for v in (first, second, third))
