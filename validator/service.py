"""The validator's judgement, transport aside: answers in, strikes, bans, standings and decisions out.

`Validator` holds what one validator knows (suspicion per node, counted strikes, bans, decision
signatures) and acts on what arrives, through an injected `publish(topic, envelope)` and, when there is a
chain, a `SlashingChain`. The daemon feeds it from gossip and from its own challenges; tests feed several
of them from a shared bus. Everything it decides is written to its `ValidatorState` first.

- `judge(answer)`: check an answer to one of our own challenges (`checks.check_answer`, our clock too),
  update the node's suspicion, and strike when a failure is provable from the evidence.
- `on_shared_answer(data)`: a client's real answer it shared with us (`pool.audits`): the same checks but
  speed (the timings are the client's word), the same suspicion update, and the same strike, whose
  evidence is the shared answer (so its prompt reaches the validators, and only on a failure).
- `on_strike(signed)`: another validator's strike, counted only if re-running the checks on its evidence
  fails too (and at the policy's severity for the reason found, not the one claimed).
- `on_ban(signed)`, `on_decision(signature)`, `on_user_report(signed)`: bans, decision signatures and
  users' reports from gossip.
- `standings()`: our signed NodeStanding of every node we know, for STANDING_TOPIC.

A node reaching the ban threshold on strikes we re-verified gets a BanNotice from us; for a bonded
operator we sign the StrikeDecision the ban implies (`strikes.decision_fields`) once the ban settled
(`sign_decisions`, which the daemon also calls on a timer), gather the others' signatures, and submit it to
`Slashing` once they hold a quorum.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import trio

from chain.quorum import QuorumRule
from p2p import Validator as GossipValidator
from pool.bans import ban_shortfall
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.eth import EthAccount, TypedDomain
from protocols.ids import BANS_TOPIC, DECISIONS_TOPIC, REPORTS_TOPIC, STANDING_TOPIC, STRIKES_TOPIC
from protocols.keys import Identity
from protocols.messages import (
    AnswerEvidence,
    BanNotice,
    NodeStanding,
    StrikeDecisionSignature,
    StrikeReport,
    UserReport,
    eth_sign,
    evidence_hash,
)
from protocols.schema import decode_message
from validator.answers import Answer, answer_from_evidence
from validator.chain import SlashingChain
from validator.checks import (
    Thresholds,
    Verdict,
    benchmark_evidence,
    check_answer,
    check_benchmark,
    timed,
    verify_benchmark_evidence,
)
from validator.errors import EvidenceError, ReferenceModelError
from validator.gossip import ban_validator, decision_validator, strike_validator, user_report_validator
from validator.reference import Reference
from validator.state import ValidatorState
from validator.strikes import (
    ZERO_ADDRESS,
    Decisions,
    RewardRow,
    StrikeBook,
    StrikePolicy,
    ban_notice,
    decision_fields,
    report_rests_on,
    reward_rows,
    user_reporter,
    verify_user_report,
)
from validator.suspicion import Suspicion, SuspicionModel

__all__ = ["Publish", "Validator"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]
STANDING_TTL_MS = 10 * 60 * 1000
MAX_PENDING_BANS = 4  # per node: notices waiting for strikes we have not received yet
DECISION_SETTLE_MARGIN_S = 5.0  # over two republish rounds (`decision_settle_s`): gossip's own delay
MAX_AUDITED = 100_000  # shared answers remembered, so one answer is never checked (or struck) twice


def decision_settle_s(republish_interval_s: float) -> float:
    """How long a validator holds a ban before signing its decision: two rounds of `republish` and a
    margin, so that every validator holds every strike and every notice of the node (a validator started
    after the first strikes gets them only then) and all keep the same lowest-hash notice. Signed sooner,
    validators that started seconds apart each signed a decision on a notice of their own, and none
    reached a quorum: the caught operator kept its bond."""
    return 2 * republish_interval_s + DECISION_SETTLE_MARGIN_S


class Validator:
    """One validator's judgement (see the module docstring)."""

    def __init__(
        self,
        *,
        peer: Identity,
        wallet: EthAccount,
        domain: TypedDomain,
        reference: Reference,
        thresholds: Thresholds,
        state: ValidatorState,
        publish: Publish,
        validators: QuorumRule,
        policy: StrikePolicy | None = None,
        suspicion: SuspicionModel | None = None,
        chain: SlashingChain | None = None,
        epoch_seconds: int = 86400,
        decision_settle_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        on_slash: Callable[[], None] = lambda: None,
        on_ban_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.peer = peer
        self.wallet = wallet
        self.address = wallet.address
        self.domain = domain
        self.reference = reference
        self.thresholds = thresholds
        self.state = state
        self.publish = publish
        self.validators = validators
        self.policy = policy or StrikePolicy()
        self.suspicion_model = suspicion or SuspicionModel()
        self.chain = chain
        self.epoch_seconds = epoch_seconds
        self.on_slash = on_slash  # called for each slash transaction this validator sent (its metrics)
        self.on_ban_refused = on_ban_refused  # called for each judgement of a notice that did not add up
        self.clock = clock
        self.book = StrikeBook(self.policy)
        self.decisions = Decisions()
        self._suspicion: dict[bytes, Suspicion] = {}
        self._operators: dict[bytes, bytes] = {}  # node key -> operator from its heartbeat binding
        self._full_strikes: dict[bytes, StrikeReport] = {}  # signature -> strike with its evidence
        self._bans: dict[bytes, envelope.Signed[BanNotice]] = {}  # node key -> ban notice
        self._ban_seen: dict[bytes, float] = {}  # node key -> when its ban arrived
        self._decided: set[bytes] = set()  # node keys whose ban we signed a decision on
        self._pending_bans: dict[bytes, dict[bytes, envelope.Signed[BanNotice]]] = {}  # strikes unseen
        self.decision_settle_s = decision_settle_s
        self._slashed: set[tuple[bytes, bytes]] = set()
        self._topic_validators: dict[str, GossipValidator] | None = None
        self._chain_lock = trio.Lock()
        self._timed: dict[bytes, deque[Answer]] = {}  # node key -> its last timed answers
        self._audited: OrderedDict[bytes, None] = OrderedDict()  # receipt hashes of shared answers checked

    # ------------------------------------------------------------------ lifecycle

    @property
    def epoch(self) -> int:
        return int(self.clock() // self.epoch_seconds)

    async def load(self) -> None:
        """Restore what the state holds (after a restart, or a `kill -9`)."""
        self._suspicion = await self.state.suspicions(self.suspicion_model)
        for strike, _own, counted, reason in await self.state.strikes():
            self._full_strikes[strike.signature] = strike
            if counted:
                self.book.count(strike, reason)
        for data in await self.state.bans():
            signed = envelope.open_signed(data, BanNotice, check_time=False)
            self._bans[signed.message.node_key] = signed
            self.book.ban(signed.message)
        by_evidence = {signed.message.evidence_hash(): key for key, signed in self._bans.items()}
        for signature in await self.state.decision_signatures():
            self.decisions.add(signature)
            if signature.validator == self.address and signature.evidence_hash in by_evidence:
                self._decided.add(by_evidence[signature.evidence_hash])
        self._slashed = await self.state.slashed()

    def node_seen(self, node_key: bytes, operator: bytes | None) -> None:
        """Remember the operator a node's heartbeat names. A binding once seen stays: dropping it (the
        operator unregistered) must not let later strikes name no operator (the binding stays slashable)."""
        if operator is not None or node_key not in self._operators:
            self._operators[node_key] = operator or ZERO_ADDRESS

    def suspicion(self, node_key: bytes) -> Suspicion:
        if node_key not in self._suspicion:
            self._suspicion[node_key] = Suspicion(self.suspicion_model)
        return self._suspicion[node_key]

    def status(self, node_key: bytes) -> str:
        """The node's standing with us: good, suspect, excluded or banned."""
        struck = self.book.status(node_key, self.epoch)
        if struck is not None:
            return struck
        return "suspect" if self.suspicion(node_key).probability >= 0.5 else "good"

    def nodes(self) -> list[bytes]:
        return sorted(set(self._suspicion) | set(self._operators))

    # ------------------------------------------------------------------ our own challenges

    async def judge(self, answer: Answer) -> Verdict:
        """Check an answer to our own challenge; strike when a failure is provable (module docstring).
        Raises ReferenceModelError when the reference cannot check it (the answer is then not counted)."""
        verdict = await check_answer(self.reference, answer, self.thresholds, own_clock=True)
        await self._after_check(answer, verdict)
        await self._check_benchmark(answer)
        return verdict

    # ------------------------------------------------------------------ clients' shared answers

    async def on_shared_answer(self, data: bytes) -> Verdict | None:
        """Check an answer a client shared (module docstring); its verdict, or None when it is not ours
        to judge: broken evidence, another pool's model, or an answer checked before. Raises
        ReferenceModelError when the reference cannot check it (the answer is then not counted)."""
        try:
            answer = answer_from_evidence(data)
        except EvidenceError as exc:
            log.info("a shared answer does not hold together: %s", exc)
            return None
        if answer.request.model != self.reference.model_id:
            return None
        receipt = hashlib.sha256(answer.evidence.receipt).digest()
        if receipt in self._audited:
            return None
        self._audited[receipt] = None
        while len(self._audited) > MAX_AUDITED:
            self._audited.popitem(last=False)
        verdict = await check_answer(self.reference, answer, self.thresholds)
        await self._after_check(answer, verdict)
        return verdict

    async def _after_check(self, answer: Answer, verdict: Verdict) -> None:
        """The node's suspicion moves with the verdict; a failure provable from the evidence is struck."""
        node_key = answer.node_key
        suspicion = self.suspicion(node_key)
        suspicion.checked(not verdict.failed)
        failed = [r.name for r in verdict.failures]
        await self.state.record_check(node_key, self.epoch, not verdict.failed, failed, suspicion)
        if verdict.failed:
            log.info(
                "node %s failed a check (%s); suspicion now %.3f",
                node_key.hex()[:16],
                verdict.summary(),
                suspicion.probability,
            )
        reason = verdict.strike.reason if verdict.strike is not None else None
        if reason is not None:
            await self._strike_if_worth(node_key, answer.request.model, reason, (answer.encoded_evidence(),))

    async def _check_benchmark(self, answer: Answer) -> None:
        """Keep the node's last timed answers; when there are enough, hold them against its attestation."""
        if answer.attestation is None or not timed(answer, self.thresholds):
            return
        recent = self._timed.setdefault(answer.node_key, deque(maxlen=self.thresholds.benchmark_answers))
        if recent and recent[-1].evidence.attestation != answer.evidence.attestation:
            recent.clear()  # a new attestation: judge it on its own answers
        recent.append(answer)
        if len(recent) < self.thresholds.benchmark_answers:
            return
        result = check_benchmark(answer.attestation, [a.receipt for a in recent], self.thresholds)
        if result.passed is not False:
            return
        suspicion = self.suspicion(answer.node_key)
        suspicion.checked(False)
        await self.state.save_suspicion(answer.node_key, suspicion)
        log.info("node %s fails its own benchmark: %s", answer.node_key.hex()[:16], result.detail)
        evidence = benchmark_evidence(list(recent))
        recent.clear()
        await self._strike_if_worth(answer.node_key, answer.request.model, "false_benchmark", evidence)

    async def _strike_if_worth(
        self, node_key: bytes, model: bytes, reason: str, evidence: tuple[bytes, ...]
    ) -> None:
        if not self._worth_striking(node_key, reason):
            return
        if not self.validators.is_validator(self.address):
            log.info("not in the current validator set: no strike report (others would not count it)")
            return
        await self._strike(node_key, model, reason, evidence)

    def _worth_striking(self, node_key: bytes, reason: str) -> bool:
        """Whether a strike for `reason` would add anything: the node is not banned, and we have no strike
        about it in the window that counts as much (others count one strike per validator)."""
        epoch = self.epoch
        if self.book.status(node_key, epoch) == "banned":
            return False
        ours = [s for s in self.book.strikes(node_key, epoch) if s.validator == self.address]
        return not any(self.policy.severity(s.reason) >= self.policy.severity(reason) for s in ours)

    async def unanswered(self, node_key: bytes) -> None:
        """A challenge the node took but never answered: suspicion rises (not provable: no strike)."""
        suspicion = self.suspicion(node_key)
        suspicion.checked(False)
        await self.state.record_check(node_key, self.epoch, False, ["unavailable"], suspicion)

    async def _strike(self, node_key: bytes, model: bytes, reason: str, evidence: tuple[bytes, ...]) -> None:
        """Publish a strike with `evidence` (an answer, or a benchmark's attestation and receipts), and the
        user report that led to it when there is one."""
        report = await self._report_on(node_key, evidence[0])
        if report is not None and len(evidence) < 16:
            evidence += (report,)
        strike = eth_sign(
            StrikeReport,
            self.wallet,
            self.domain,
            validator=self.address,
            node_key=node_key,
            operator=self._operators.get(node_key, ZERO_ADDRESS),
            model=model,
            epoch=self.epoch,
            reason=reason,
            severity=self.policy.severity(reason),
            evidence_hash=evidence_hash(evidence),
            evidence=evidence,
        )
        log.warning("striking node %s: %s", node_key.hex()[:16], reason)
        self._full_strikes[strike.signature] = strike
        await self.state.store_strike(strike, own=True, counted=True)
        self.book.count(strike)
        await self.publish(STRIKES_TOPIC, envelope.sign(strike, self.peer, ttl_ms=StrikeReport.MAX_TTL_MS))
        await self._after_strike(strike.node_key)

    async def _report_on(self, node_key: bytes, failing: bytes) -> bytes | None:
        """A valid user report, naming a reward address, of the very answer our strike shows failing: the
        one the strike rests on (a report that merely came first about the node is not)."""
        try:
            answer = decode_message(failing, AnswerEvidence)
        except ProtocolError:
            return None  # a benchmark's evidence: no user reported it
        for data in await self.state.user_reports(node_key):
            try:
                signed = verify_user_report(data)
            except EvidenceError:
                continue
            if signed.message.reporter is not None and report_rests_on(signed, answer):
                return data
        return None

    # ------------------------------------------------------------------ others' strikes

    async def on_strike(self, signed: envelope.Signed[StrikeReport]) -> bool:
        """Re-verify another validator's strike (gossip checked its signatures); True if it now counts."""
        strike = signed.message
        if strike.validator == self.address or strike.signature in self._full_strikes:
            return False
        if not self.validators.is_validator(strike.validator):
            log.info("ignoring a strike by %s, not a current validator", strike.validator.hex())
            return False
        reason = await self._reproduce(strike)
        counted = reason is not None
        if counted and reason != strike.reason:
            log.info(
                "strike on %s reproduced as %s, not %s", strike.node_key.hex()[:16], reason, strike.reason
            )
        self._full_strikes[strike.signature] = strike
        await self.state.store_strike(strike, own=False, counted=counted, reason=reason)
        if counted:
            self.book.count(strike, reason)
            await self._after_strike(strike.node_key)
        return counted

    async def _reproduce(self, strike: StrikeReport) -> str | None:
        """The reason our own checks of the strike's evidence fail for, or None (not reproduced)."""
        if strike.model != self.reference.model_id:
            return None  # another pool's strike: its validators judge it
        if strike.reason == "false_benchmark":
            return self._reproduce_benchmark(strike)
        try:
            answer = answer_from_evidence(strike.evidence[0])
        except (EvidenceError, IndexError) as exc:
            log.info("a strike by %s has broken evidence: %s", strike.validator.hex(), exc)
            return None
        if answer.node_key != strike.node_key or answer.request.model != strike.model:
            log.info("a strike by %s names another node or model than its evidence", strike.validator.hex())
            return None
        if answer.request.model != self.reference.model_id:
            return None  # another pool's strike: its validators judge it
        try:
            verdict = await check_answer(self.reference, answer, self.thresholds)
        except ReferenceModelError as exc:
            log.warning("could not re-check a strike: %s", exc)
            return None
        failure = verdict.strike
        if failure is None:
            log.info(
                "a strike by %s on %s did not reproduce", strike.validator.hex(), strike.node_key.hex()[:16]
            )
            return None
        return failure.reason

    def _reproduce_benchmark(self, strike: StrikeReport) -> str | None:
        receipts = [item for item in strike.evidence if not _is_user_report(item)]
        try:
            attestation, signed = verify_benchmark_evidence(
                receipts, strike.node_key, strike.model, self.thresholds
            )
        except EvidenceError as exc:
            log.info("a benchmark strike by %s has broken evidence: %s", strike.validator.hex(), exc)
            return None
        result = check_benchmark(attestation, signed, self.thresholds)
        return result.reason if result.passed is False else None

    # ------------------------------------------------------------------ bans

    async def _after_strike(self, node_key: bytes) -> None:
        for signed in list(self._pending_bans.get(node_key, {}).values()):
            await self.on_ban(signed)
        strikes = self.book.ban_due(node_key, self.epoch)
        if strikes is not None and self.validators.is_validator(self.address):
            notice = ban_notice(strikes, epoch=self.epoch)
            data = envelope.sign(notice, self.peer, ttl_ms=BanNotice.MAX_TTL_MS)
            log.warning("banning node %s on %d strikes", node_key.hex()[:16], len(strikes))
            await self.publish(BANS_TOPIC, data)
            await self.on_ban(envelope.open_signed(data, BanNotice))
        else:
            await self.sign_decisions()

    async def on_ban(self, signed: envelope.Signed[BanNotice]) -> bool:
        """Record a ban that our own recomputation upholds (`_ban_shortfall`); True if it is news. A
        notice whose strikes we have not all received, or not all counted, waits (a few per node) and is
        judged again after each strike we count; whoever published it, it is upheld only when they add up.

        Two validators may ban a node at once, on different strikes: every validator keeps the notice with
        the lowest evidence hash (until it signs a decision on one), so that they all sign the same one.
        """
        notice = signed.message
        digest = notice.evidence_hash()
        if any(s.signature not in self._full_strikes for s in notice.strikes):
            pending = self._pending_bans.setdefault(notice.node_key, {})
            if len(pending) < MAX_PENDING_BANS:
                pending[digest] = signed
            return False
        self._pending_bans.get(notice.node_key, {}).pop(digest, None)
        shortfall = self._ban_shortfall(notice)
        if shortfall is not None:
            # Our re-checks of its strikes may still be running: kept (bounded) and judged again after each
            # strike we count, so that validators that heard of strikes in different orders still uphold
            # (and sign a decision on) the same notice rather than each one of its own.
            pending = self._pending_bans.setdefault(notice.node_key, {})
            if len(pending) < MAX_PENDING_BANS:
                pending[digest] = signed
            log.info("not upholding a ban of node %s (yet): %s", notice.node_key.hex()[:16], shortfall)
            self.on_ban_refused()
            return False
        known = self._bans.get(notice.node_key)
        if known is not None:
            if notice.node_key not in self._decided and digest < known.message.evidence_hash():
                self._bans[notice.node_key] = signed
                await self.state.store_ban(notice.node_key, signed.raw, replace=True)
            return False
        self._bans[notice.node_key] = signed
        self._ban_seen[notice.node_key] = self.clock()
        self.book.ban(notice)
        await self.state.store_ban(notice.node_key, signed.raw)
        log.warning("node %s is banned (%s)", notice.node_key.hex()[:16], notice.reason)
        await self.sign_decisions()
        return True

    def _ban_shortfall(self, notice: BanNotice) -> str | None:
        """Why the network's rules, applied to the reasons our own re-checks found for the notice's
        strikes, do not ban its node (None: they do)."""
        return ban_shortfall(
            notice,
            self.policy.ban_rules(),
            self.validators.is_validator,
            lambda strike: strike.validator,  # gossip verified each strike's signature
            self.book.reason_of,
        )

    # ------------------------------------------------------------------ awards

    def awards(self, epoch: int, block: int) -> list[RewardRow]:
        """What the node rewards pool owes for the bans of `epoch`, decided from the chain at the epoch's
        closing `block` alone (blocking: call from a thread), so every validator books the same whenever
        a ban reached it. A bonded node forfeits its slash, whose reporter takes its cut on chain; the pool
        pays the other awards out of the rest of the slash, never more (docs/rewards.md)."""
        if self.chain is None:
            return []
        rules = self.chain.strike_rules(block)
        validator_award, user_award = rules[5], rules[6]
        rows: list[RewardRow] = []
        for signed in sorted(self._bans.values(), key=lambda signed: signed.message.node_key):
            notice = signed.message
            if notice.epoch != epoch:
                continue
            forfeited, slash_reporter = 0, None
            if notice.operator != ZERO_ADDRESS and self.chain.slashable(
                notice.operator, notice.node_key, block
            ):
                slash_bps = self.chain.slash_bps(block)
                fields = decision_fields(
                    signed, self._full_strikes, slash_bps=slash_bps, epoch_seconds=self.epoch_seconds
                )
                taken, cut = self.chain.forfeit(notice.operator, slash_bps, block)
                forfeited, slash_reporter = taken - cut, fields.reporter
            reporter = next(
                (u for s in notice.strikes if (u := user_reporter(self._full_strikes.get(s.signature, s)))),
                None,
            )
            rows += reward_rows(
                notice,
                reporter,
                forfeited=forfeited,
                slash_reporter=slash_reporter,
                validator_award=validator_award,
                user_award=user_award,
            )
        return rows

    # ------------------------------------------------------------------ decisions

    async def sign_decisions(self) -> None:
        """Sign the slashing decision of each ban of a bonded operator that settled (seen at least
        `decision_settle_s` ago) and that our own recomputation of its strikes upholds; one decision per
        node, ever."""
        if self.chain is None:
            return
        settled = [
            signed
            for node_key, signed in self._bans.items()
            if node_key not in self._decided
            and signed.message.operator != ZERO_ADDRESS
            and self.clock() - self._ban_seen.get(node_key, 0.0) >= self.decision_settle_s
            and self._ban_shortfall(signed.message) is None
        ]
        if not settled:
            return
        slash_bps = await trio.to_thread.run_sync(self.chain.slash_bps)
        for signed in settled:
            notice = signed.message
            if not await trio.to_thread.run_sync(self.chain.slashable, notice.operator, notice.node_key):
                continue
            fields = decision_fields(
                signed, self._full_strikes, slash_bps=slash_bps, epoch_seconds=self.epoch_seconds
            )
            signature = eth_sign(
                StrikeDecisionSignature,
                self.wallet,
                self.chain.domain(),
                validator=self.address,
                **fields.signature_fields(),
            )
            self._decided.add(notice.node_key)
            await self.publish(
                DECISIONS_TOPIC,
                envelope.sign(signature, self.peer, ttl_ms=StrikeDecisionSignature.MAX_TTL_MS),
            )
            await self.on_decision(signature)

    async def on_decision(self, signature: StrikeDecisionSignature) -> None:
        """Keep a decision signature (gossip checked it); submit the decision once a quorum signed it."""
        fields = self.decisions.add(signature)
        await self.state.store_decision_signature(signature)
        if self.chain is None or (fields.evidence_hash, fields.offender) in self._slashed:
            return
        ordered = self.decisions.quorum(fields, self.validators)
        if ordered is None:
            return
        async with self._chain_lock:  # one transaction at a time from our wallet (nonces)
            if (fields.evidence_hash, fields.offender) in self._slashed:
                return
            transaction = await trio.to_thread.run_sync(self.chain.slash, fields, ordered)
            self._slashed.add((fields.evidence_hash, fields.offender))
        await self.state.record_slash(fields.evidence_hash, fields.offender, transaction or "")
        if transaction is not None:
            self.on_slash()
            log.warning("slashed operator 0x%s (transaction %s)", fields.offender.hex(), transaction)

    # ------------------------------------------------------------------ users' reports

    async def on_user_report(self, signed: envelope.Signed[UserReport]) -> None:
        """A user's report (gossip checked it): the node is sampled more, and a strike that follows names
        the reporter."""
        import hashlib

        report = signed.message
        if report.model != self.reference.model_id:
            return
        if await self.state.store_user_report(
            hashlib.sha256(signed.raw).digest(), report.node_key, signed.raw
        ):
            suspicion = self.suspicion(report.node_key)
            suspicion.reported()
            await self.state.save_suspicion(report.node_key, suspicion)

    # ------------------------------------------------------------------ gossip

    def topic_validators(self) -> dict[str, GossipValidator]:
        """The gossip validators of the topics we read (made once: each keeps its replay cache)."""
        if self._topic_validators is None:

            def is_validator(address: bytes) -> bool:
                return self.validators.is_validator(address)

            self._topic_validators = {
                STRIKES_TOPIC: strike_validator(self.domain, is_validator),
                BANS_TOPIC: ban_validator(
                    self.domain,
                    is_validator,
                    lambda: self.policy.ban_rules(),
                    on_refuse=lambda signed, shortfall: self.on_ban_refused(),
                ),
                REPORTS_TOPIC: user_report_validator(),
            }
            if self.chain is not None:
                self._topic_validators[DECISIONS_TOPIC] = decision_validator(
                    self.chain.domain(), is_validator
                )
        return self._topic_validators

    async def deliver(self, topic: str, data: bytes) -> None:
        """Act on a message its topic's validator accepted."""
        if topic == STRIKES_TOPIC:
            await self.on_strike(envelope.open_signed(data, StrikeReport, check_time=False))
        elif topic == BANS_TOPIC:
            await self.on_ban(envelope.open_signed(data, BanNotice, check_time=False))
        elif topic == DECISIONS_TOPIC:
            await self.on_decision(
                envelope.open_signed(data, StrikeDecisionSignature, check_time=False).message
            )
        elif topic == REPORTS_TOPIC:
            await self.on_user_report(envelope.open_signed(data, UserReport, check_time=False))

    # ------------------------------------------------------------------ standings

    async def standings(self) -> list[bytes]:
        """Our signed NodeStanding envelope of every node we know, for STANDING_TOPIC."""
        epoch = self.epoch
        envelopes = []
        for node_key in self.nodes():
            checks, failures = await self.state.check_counts(node_key, epoch)
            standing = eth_sign(
                NodeStanding,
                self.wallet,
                self.domain,
                validator=self.address,
                node_key=node_key,
                model=self.reference.model_id,
                epoch=epoch,
                checks=checks,
                failures=failures,
                suspicion_micro=round(self.suspicion(node_key).probability * 1_000_000),
                status=self.status(node_key),
            )
            envelopes.append(envelope.sign(standing, self.peer, ttl_ms=STANDING_TTL_MS))
        return envelopes

    async def publish_standings(self) -> None:
        for data in await self.standings():
            await self.publish(STANDING_TOPIC, data)

    def banned_operators(self, epoch: int) -> list[str]:
        """The operators whose nodes stand banned in `epoch` (by the bans' own epochs, which every
        validator reads alike): the settlement suspends their rewards for it."""
        return sorted(
            {
                "0x" + notice.operator.hex()
                for notice in (signed.message for signed in self._bans.values())
                if notice.operator != ZERO_ADDRESS
                and notice.epoch <= epoch
                and (notice.until_epoch == 0 or epoch < notice.until_epoch)
            }
        )

    async def republish(self) -> None:
        """Publish the bans we hold and the strikes we counted in the current window again, whoever first
        published them: gossip is best effort, and a validator that joined late or missed a message still
        needs them to uphold the same notice as the others, also when their publisher is gone (receivers
        ignore repeats)."""
        epoch = self.epoch
        for signed in self._bans.values():
            await self.publish(BANS_TOPIC, signed.raw)
        for node in self.book.nodes():
            for strike in self.book.strikes(node, epoch):
                full = self._full_strikes[strike.signature]
                await self.publish(
                    STRIKES_TOPIC, envelope.sign(full, self.peer, ttl_ms=StrikeReport.MAX_TTL_MS)
                )


def _is_user_report(item: bytes) -> bool:
    try:
        verify_user_report(item)
    except EvidenceError:
        return False
    return True
