"""From failed checks to strikes, exclusion, bans and slashing decisions: the rules, as plain data.

Strikes. A validator reports a provable failure (`checks.Verdict.strike`) as a signed StrikeReport whose
evidence is the answer (`AnswerEvidence`) and, when a user's report led to it, that `UserReport`
envelope. Other validators count a strike only after re-running the checks on its evidence and reaching a
provable failure themselves; they count it at the severity the policy gives its reason, whatever the
report claims, and only the most severe strike of each validator about a node within `window_epochs`.

Exclusion and ban. A node whose counted severity reaches `exclude_points` is excluded (routers leave it
out) for `exclusion_epochs`; at `ban_points`, with strikes from at least `ban_validators` distinct
validators, it is banned for good (`BanNotice`, until_epoch 0), so no single validator can ban anyone.
Those ban rules are the chain's (`Slashing.strikeRules`), and every peer re-applies them to a notice's
strikes (`pool.bans.ban_shortfall`), a validator at the reasons its own re-checks found.

Slashing. A banned node's operator, when it has bonded stake, is slashed by a `StrikeDecision` that a
quorum of the validator set signs (its own weight left out, `Slashing.checkQuorumExcluding`). All signers
must sign the same fields, so each is derived from the ban notice alone: the offender is the notice's
operator, the evidence hash the notice's (`BanNotice.evidence_hash`), the deadline six days after the
notice was signed (the contract takes at most seven ahead), the share the chain sets for every validator
(`Slashing.slashBps`, within its `maxSlashBps`: a share of each validator's own would split the quorum and
the awards paid out of the slash), and the reporter: the user whose report the first strike that rests on
one rests on (`user_reporter`), else the validator of the notice's first strike (the first to strike, as
its issuer saw).

Rewards (docs/rewards.md, "Strikes, bans and awards"). A reward for catching a node never exceeds what the
node forfeits, so banning one's own throwaway nodes never pays. The slash pays its reporter its cut (a
validator's bonded, a user's in stkPOD); the rest of what the pool pays (`RewardRow`) comes out of the rest
of the slash, and is decided at the epoch's close from the chain at its closing block (`reward_rows`), so
the moment a ban arrived never changes a root. A user is the reporter only when the ban's evidence rests on
its report: the strike's failing answer is the answer the user reported (`user_reporter`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from chain.quorum import QuorumRule
from pool.bans import DEFAULT_SEVERITIES, BanRules, canonical_order
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.inference import verify_countersigned_receipt
from protocols.messages import (
    STRIKE_REASONS,
    AnswerEvidence,
    BanNotice,
    Receipt,
    StrikeDecisionSignature,
    StrikeReport,
    UserReport,
)
from protocols.schema import decode_message
from validator.errors import EvidenceError

__all__ = [
    "DECISION_LIFETIME_S",
    "AttackOutcome",
    "DecisionFields",
    "Decisions",
    "RewardRow",
    "StrikeBook",
    "StrikePolicy",
    "ban_attack_outcomes",
    "ban_notice",
    "check_user_report",
    "decision_fields",
    "report_rests_on",
    "reward_rows",
    "stripped",
    "user_reporter",
    "verify_user_report",
]

ZERO_ADDRESS = b"\0" * 20
DECISION_LIFETIME_S = 6 * 24 * 3600


@dataclass(frozen=True)
class StrikePolicy:
    """How strikes add up. What a ban needs (severities, points, validators, window) is the network's rule:
    the daemon takes it from the chain (`with_rules`); the rest is this validator's own standing."""

    severities: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))
    exclude_points: int = 6
    ban_points: int = 12
    ban_validators: int = 2
    exclusion_epochs: int = 1
    window_epochs: int = 7

    def __post_init__(self) -> None:
        if set(self.severities) != set(STRIKE_REASONS):
            raise ValueError(f"severities must name every strike reason: {sorted(STRIKE_REASONS)}")
        if not 0 < self.exclude_points <= self.ban_points or self.ban_validators < 1:
            raise ValueError("need 0 < exclude_points <= ban_points and ban_validators >= 1")

    def severity(self, reason: str) -> int:
        return self.severities[reason]

    def ban_rules(self) -> BanRules:
        return BanRules(self.severities, self.ban_points, self.ban_validators, self.window_epochs)

    def with_rules(self, rules: BanRules) -> StrikePolicy:
        """This policy under the network's ban rules (the exclusion threshold kept at most the ban's)."""
        return replace(
            self,
            severities=dict(rules.severities),
            ban_points=rules.ban_points,
            ban_validators=rules.ban_validators,
            window_epochs=rules.window_epochs,
            exclude_points=min(self.exclude_points, rules.ban_points),
        )


def stripped(strike: StrikeReport) -> StrikeReport:
    """The strike without its evidence (its signature covers only the evidence hash): what a ban carries,
    so that a ban of many strikes still fits a gossip message."""
    return replace(strike, evidence=())


@dataclass
class StrikeBook:
    """Counted strikes by node, and the exclusions and bans they lead to (see the module docstring)."""

    policy: StrikePolicy = field(default_factory=StrikePolicy)
    _strikes: dict[bytes, dict[bytes, StrikeReport]] = field(default_factory=dict)
    _reasons: dict[bytes, str] = field(default_factory=dict)  # strike signature -> reason it counts for
    _excluded_until: dict[bytes, int] = field(default_factory=dict)
    _banned: dict[bytes, BanNotice] = field(default_factory=dict)

    def count(self, strike: StrikeReport, reason: str | None = None) -> bool:
        """Count a re-verified strike at the severity of `reason` (what the re-check found; default the
        strike's own); returns False if one of the same validator about the node counts as much already."""
        by_validator = self._strikes.setdefault(strike.node_key, {})
        known = by_validator.get(strike.validator)
        self._reasons[strike.signature] = reason or strike.reason
        weight = self.policy.severity(reason or strike.reason)
        if known is not None and (self._severity(known), known.epoch) >= (weight, strike.epoch):
            return False
        by_validator[strike.validator] = strike
        return True

    def reason_of(self, strike: StrikeReport) -> str | None:
        """The reason a strike counts for with us (what our re-check found); None: we never counted it."""
        return self._reasons.get(strike.signature)

    def _severity(self, strike: StrikeReport) -> int:
        return self.policy.severity(self._reasons.get(strike.signature, strike.reason))

    def strikes(self, node_key: bytes, epoch: int) -> list[StrikeReport]:
        """The counted strikes about a node still within the window at `epoch`, in the order their
        validators first struck it (as far as we saw): a ban's first strike is its reporter's."""
        return [
            s
            for s in self._strikes.get(node_key, {}).values()
            if epoch - self.policy.window_epochs < s.epoch <= epoch
        ]

    def nodes(self) -> list[bytes]:
        """The nodes with a counted strike."""
        return list(self._strikes)

    def points(self, node_key: bytes, epoch: int) -> int:
        return sum(self._severity(s) for s in self.strikes(node_key, epoch))

    def status(self, node_key: bytes, epoch: int) -> str | None:
        """ "banned", "excluded", or None; an exclusion starts when the points reach exclude_points."""
        if node_key in self._banned:
            return "banned"
        if self.points(node_key, epoch) >= self.policy.exclude_points:
            self._excluded_until.setdefault(node_key, epoch + self.policy.exclusion_epochs)
        if self._excluded_until.get(node_key, -1) >= epoch:
            return "excluded"
        return None

    def ban_due(self, node_key: bytes, epoch: int) -> list[StrikeReport] | None:
        """The strikes that justify banning the node now, or None (not enough, or banned already)."""
        if node_key in self._banned:
            return None
        strikes = self.strikes(node_key, epoch)
        enough = sum(self._severity(s) for s in strikes) >= self.policy.ban_points
        return strikes if enough and len(strikes) >= self.policy.ban_validators else None

    def ban(self, notice: BanNotice) -> bool:
        """Record a ban; returns False if the node was banned already."""
        if notice.node_key in self._banned:
            return False
        self._banned[notice.node_key] = notice
        return True

    def banned(self) -> dict[bytes, BanNotice]:
        return dict(self._banned)


# ---------------------------------------------------------------------------------------------- user reports


def check_user_report(signed: envelope.Signed[UserReport]) -> None:
    """Check a verified UserReport envelope: its receipt verifies, was countersigned by the session key that
    signed the report, and is the named node's answer to the named request. Raises EvidenceError."""
    report = signed.message
    try:
        verified = verify_countersigned_receipt(report.receipt)
    except ProtocolError as exc:
        raise EvidenceError(f"the user report's receipt does not verify: {exc}") from exc
    receipt = verified.receipt
    if not (
        verified.client_key == signed.signer
        and verified.node_key == report.node_key
        and receipt.request_id == report.request_id
        and receipt.model == report.model
    ):
        raise EvidenceError("the user report's receipt is not the reporter's answer from that node")


def verify_user_report(data: bytes) -> envelope.Signed[UserReport]:
    """A UserReport envelope checked as evidence (its time is not checked); EvidenceError if it fails."""
    try:
        signed = envelope.open_signed(data, UserReport, check_time=False)
    except ProtocolError as exc:
        raise EvidenceError(f"not a valid user report: {exc}") from exc
    check_user_report(signed)
    return signed


def report_rests_on(signed: envelope.Signed[UserReport], answer: AnswerEvidence) -> bool:
    """Whether a (verified) user report is about the very answer a strike's evidence shows failing: same
    node, request and output. Only then does the ban's evidence rest on the report."""
    report = signed.message
    try:
        receipt = verify_countersigned_receipt(report.receipt).receipt
        answered = envelope.open_signed(answer.receipt, Receipt, check_time=False)
    except ProtocolError:
        return False
    return (
        answered.signer == report.node_key
        and answered.message.request_id == receipt.request_id == report.request_id
        and answered.message.output_hash == receipt.output_hash
    )


def user_reporter(strike: StrikeReport) -> bytes | None:
    """The reward address of the user report a strike carries (its second evidence item) when the strike's
    failing answer (its first) is the one the user reported; None otherwise (a report that only came first
    is not what the ban rests on)."""
    if len(strike.evidence) < 2:
        return None
    try:
        signed = verify_user_report(strike.evidence[1])
        answer = decode_message(strike.evidence[0], AnswerEvidence)
    except (EvidenceError, ProtocolError):
        return None
    if signed.message.node_key != strike.node_key or not report_rests_on(signed, answer):
        return None
    return signed.message.reporter


# ---------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class DecisionFields:
    """The StrikeDecision every signer of one ban signs (Slashing's EIP-712 struct)."""

    offender: bytes
    evidence_hash: bytes
    slash_bps: int
    reporter: bytes
    deadline: int

    def signature_fields(self) -> dict:
        return {
            "offender": self.offender,
            "evidence_hash": self.evidence_hash,
            "slash_bps": self.slash_bps,
            "reporter": self.reporter,
            "deadline": self.deadline,
        }

    def as_tuple(self) -> tuple:
        """The decision as Slashing.slash takes it (checksummed addresses, as web3 wants them)."""
        from eth_utils import to_checksum_address

        return (
            to_checksum_address(self.offender),
            self.evidence_hash,
            self.slash_bps,
            to_checksum_address(self.reporter),
            self.deadline,
        )


def decision_fields(
    notice: envelope.Signed[BanNotice],
    full_strikes: Mapping[bytes, StrikeReport],
    *,
    slash_bps: int,
    epoch_seconds: int,
) -> DecisionFields:
    """The decision on a ban (module docstring). `full_strikes` maps strike signatures to the strikes with
    their evidence (as first received), where the user reports are; `slash_bps` is the chain's
    (`Slashing.slashBps`). Every field comes from the notice's message, none from its envelope: two
    validators that published the same ban at different moments sign one decision (its deadline runs
    from the start of the ban's epoch)."""
    ban = notice.message
    reporter = ban.strikes[0].validator
    for strike in ban.strikes:
        user = user_reporter(full_strikes.get(strike.signature, strike))
        if user is not None:
            reporter = user
            break
    return DecisionFields(
        offender=ban.operator,
        evidence_hash=ban.evidence_hash(),
        slash_bps=slash_bps,
        reporter=reporter,
        deadline=ban.epoch * epoch_seconds + DECISION_LIFETIME_S,
    )


@dataclass
class Decisions:
    """StrikeDecisionSignatures gathered by decision, until a quorum of the validator set signed one."""

    _signatures: dict[DecisionFields, dict[bytes, bytes]] = field(default_factory=dict)

    def add(self, signature: StrikeDecisionSignature) -> DecisionFields:
        """Keep a verified signature (its EIP-712 signature checked by the caller); returns its decision."""
        fields = DecisionFields(
            signature.offender,
            signature.evidence_hash,
            signature.slash_bps,
            signature.reporter,
            signature.deadline,
        )
        self._signatures.setdefault(fields, {})[signature.validator] = signature.signature
        return fields

    def quorum(self, fields: DecisionFields, rule: QuorumRule) -> list[bytes] | None:
        """The decision's signatures in the contract's order once their signers hold a quorum without the
        offender's weight, as checkQuorumExcluding counts; else None."""
        return rule.quorum_signatures(self._signatures.get(fields, {}), excluded=fields.offender)

    def signed_by(self, fields: DecisionFields) -> set[bytes]:
        return set(self._signatures.get(fields, {}))


# ---------------------------------------------------------------------------------------------- rewards


@dataclass(frozen=True)
class RewardRow:
    """A reward the epoch settlement pays from the node rewards pool (see the module docstring).
    `bonded`: the whitepaper pays validators in bonded POD, so the settlement should pay this bonded."""

    epoch: int
    account: bytes
    role: str  # "validator" or "user"
    amount: int  # POD wei
    bonded: bool
    evidence_hash: bytes
    node_key: bytes


def reward_rows(
    ban: BanNotice,
    reporter_user: bytes | None,
    *,
    forfeited: int,
    slash_reporter: bytes | None,
    validator_award: int,
    user_award: int,
) -> list[RewardRow]:
    """What the node rewards pool owes for catching the node of `ban`, paid out of `forfeited` (what the
    node loses that no one has been paid from yet) so it never exceeds it: the first striking validator up
    to `validator_award`, then the user whose report the ban rests on up to `user_award`. `slash_reporter`
    took the slash's own reporter cut, and gets nothing more here."""
    evidence = ban.evidence_hash()
    rows = []
    left = max(forfeited, 0)
    for account, role, award in (
        (ban.strikes[0].validator, "validator", validator_award),
        (reporter_user, "user", user_award),
    ):
        if account is None or account in (ZERO_ADDRESS, slash_reporter):
            continue
        amount = min(award, left)
        if amount > 0:
            rows.append(
                RewardRow(ban.epoch, account, role, amount, role == "validator", evidence, ban.node_key)
            )
            left -= amount
    return rows


def ban_notice(strikes: Sequence[StrikeReport], *, epoch: int, reason: str | None = None) -> BanNotice:
    """A permanent ban justified by `strikes` (all about one node), carrying them without evidence, in
    their canonical order (`pool.bans.canonical_order`)."""
    strikes = canonical_order(strikes)
    first = strikes[0]
    return BanNotice(
        node_key=first.node_key,
        operator=first.operator,
        model=first.model,
        epoch=epoch,
        until_epoch=0,
        reason=reason or first.reason,
        strikes=tuple(stripped(s) for s in strikes),
    )


# ---------------------------------------------------------------------------------------------- attacks


@dataclass(frozen=True)
class AttackOutcome:
    """What an attack on the award rules costs its author and pays accounts it controls (POD wei)."""

    name: str
    cost: int
    gain: int


def ban_attack_outcomes(
    *,
    nodes: int,
    bond: int,
    slash_bps: int,
    reporter_bps: int,
    validator_award: int,
    user_award: int,
) -> list[AttackOutcome]:
    """The attacks of issue 21 under `reward_rows`, with the attacker granted every account it could hold:
    the reporting user and even the first striking validator. Farming `nodes` throwaway nodes with no bond,
    farming bonded ones (`bond` each, slashed at `slash_bps` with `reporter_bps` to the slash's reporter),
    and sniping a report (naming the node first, about another answer) on an honest validator's ban."""
    attacker_validator, attacker_user, honest_validator = b"\1" * 20, b"\2" * 20, b"\3" * 20

    def notice(first: bytes) -> BanNotice:
        strike = StrikeReport(
            validator=first,
            node_key=b"\0" * 32,
            operator=ZERO_ADDRESS,
            model=b"\0" * 32,
            epoch=0,
            reason="wrong_model",
            severity=8,
            evidence_hash=b"\0" * 32,
            signature=b"\0" * 65,
        )
        return ban_notice([strike], epoch=0)

    def paid(rows: list[RewardRow], accounts: set[bytes]) -> int:
        return sum(row.amount for row in rows if row.account in accounts)

    ours = {attacker_validator, attacker_user}
    unbonded = [
        reward_rows(
            notice(attacker_validator),
            attacker_user,
            forfeited=0,
            slash_reporter=None,
            validator_award=validator_award,
            user_award=user_award,
        )
        for _ in range(nodes)
    ]
    taken = bond * slash_bps // 10_000
    cut = taken * reporter_bps // 10_000
    bonded = [
        reward_rows(
            notice(attacker_validator),
            attacker_user,
            forfeited=taken - cut,
            slash_reporter=attacker_user,
            validator_award=validator_award,
            user_award=user_award,
        )
        for _ in range(nodes)
    ]
    sniped = reward_rows(
        notice(honest_validator),
        None,  # the sniper's report is not about the failing answer: the ban does not rest on it
        forfeited=taken - cut,
        slash_reporter=honest_validator,
        validator_award=validator_award,
        user_award=user_award,
    )
    return [
        AttackOutcome(
            f"ban farming: {nodes} unbonded nodes, self-reported", 0, sum(paid(r, ours) for r in unbonded)
        ),
        AttackOutcome(
            f"ban farming: {nodes} bonded nodes, self-reported",
            nodes * taken,
            nodes * cut + sum(paid(r, ours) for r in bonded),
        ),
        AttackOutcome("report sniping: first report, another answer", 0, paid(sniped, {attacker_user})),
    ]
