"""Epoch settlement, pure: an epoch's receipts and the chain's state at its close become what clients pay,
what nodes earn and the Merkle root of cumulative rewards the validators sign (docs/rewards.md,
"Base rewards"). Every step is a function of signed evidence and of chain state read at one block, so
every validator computes the same debits and the same root, and re-running a settlement from the same
evidence gives the same bytes.

1. Receipts are the epoch's: a receipt belongs to epoch `started_at_ms // epoch_ms` (the node's clock,
   which the client checked against its own), and pays in that epoch only. Of several receipts for one
   answer (the same node and request hash, signed under different envelope nonces) the one with the
   smallest digest counts; the validators' evidence store keeps the pair spent for good, so no receipt
   pays in a second epoch.
2. A receipt is *paid* when it carries a credit authorisation that verifies in the Credits contract's
   EIP-712 domain, names the receipt's session key and model, had not expired when the node started the
   answer (the node's clock), when the model has a price, and when both the authorisation's cap and the
   client's available credit still cover its charge, `price × (tokens_in + tokens_out)` (prices are per
   million tokens, so charges are counted in millionths of the payment token's smallest unit). Receipts
   are charged in (started_at_ms, digest) order, so the cut-off at a cap is the same everywhere.
3. Each client is debited its charges, rounded down to whole units; the debits are the epoch's revenue.
4. Base rewards: the epoch emits at most `emission_revenue_bps` of the revenue earned by registered nodes,
   valued in POD at the pair's time-weighted price, and at most `epoch_emission_cap`; each operator gets
   the share of it that its registered nodes' paid charges make of all of them (rounding down; the
   remainder stays in the pool). Unpaid receipts earn nothing: a receipt is worth only what somebody paid
   for it, so paying one's own node with throwaway keys returns at most that share of its cost.
5. The reward engine closes the epoch on the chain snapshot; what it pays, and the epoch's protocol awards
   (validators' and reporters' rewards, outside the engine's earnings history), are added to each
   account's cumulative total, and the tree of cumulative totals is the epoch's root.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from chain.address import checked_address
from chain.merkle import RewardsTree
from chain.rewards import AccountEpoch, EpochClose, RewardParams, close_epoch, encode_result
from chain.rewards.base import PER_MILLION, base_rewards, emission
from chain.snapshot import ChainSnapshot, epoch_inputs, previous_from_output
from protocols import codec
from protocols.errors import ProtocolError
from protocols.eth import TypedDomain, keccak256
from protocols.inference import VerifiedReceipt
from protocols.keys import peer_id_from_public_key
from protocols.messages import CreditAuthorisation, eth_signer
from validator.errors import SettlementError

__all__ = [
    "MAX_DEBIT_BATCH",
    "Carry",
    "DebitBatch",
    "EpochMarket",
    "EpochSettlement",
    "Payments",
    "ReceiptFacts",
    "credit_digest",
    "debit_batches",
    "facts_of",
    "price_receipts",
    "receipt_commitment",
    "receipt_facts",
    "settle_epoch",
]

MAX_DEBIT_BATCH = 500
"""Credits.MAX_BATCH_SIZE: users per debit batch."""


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    """What settlement needs of one verified receipt (the evidence store keeps these beside its bytes)."""

    digest: bytes
    """sha256 of the node-signed receipt envelope."""
    node_key: bytes
    request_hash: bytes
    model: bytes
    client_key: bytes
    started_at_ms: int
    tokens: int
    """tokens_in + tokens_out, each within the request's bounds (the Receipt schema checks them)."""
    credit: bytes | None
    """credit_digest of the authorisation that pays for it, if any."""


def credit_digest(credit: CreditAuthorisation) -> bytes:
    """The identity of a credit authorisation (sha256 of its canonical encoding): caps are per digest."""
    return hashlib.sha256(codec.pack(credit.to_wire())).digest()


def receipt_facts(verified: VerifiedReceipt) -> tuple[ReceiptFacts, CreditAuthorisation | None]:
    """The facts of a verified receipt, and the credit authorisation it carries."""
    r = verified.receipt
    facts = ReceiptFacts(
        digest=verified.digest,
        node_key=verified.node_key,
        request_hash=r.request_hash,
        model=r.model,
        client_key=r.client_key,
        started_at_ms=r.started_at_ms,
        tokens=r.tokens_in + r.tokens_out,
        credit=credit_digest(r.credit) if r.credit is not None else None,
    )
    return facts, r.credit


def facts_of(
    receipts: Iterable[VerifiedReceipt],
) -> tuple[list[ReceiptFacts], dict[bytes, CreditAuthorisation]]:
    """The facts of verified receipts, and the credit authorisations they carry by digest."""
    facts: list[ReceiptFacts] = []
    credits: dict[bytes, CreditAuthorisation] = {}
    for verified in receipts:
        fact, credit = receipt_facts(verified)
        facts.append(fact)
        if credit is not None and fact.credit is not None:  # the fact names the digest of its credit
            credits[fact.credit] = credit
    return facts, credits


def receipt_commitment(digests: Iterable[bytes]) -> bytes:
    """The commitment to a set of receipts that validators compare: sha256 of their digests, ascending."""
    hasher = hashlib.sha256(b"dolphin-network:receipt-set:v1")
    for digest in sorted(digests):
        hasher.update(digest)
    return hasher.digest()


def counted_receipts(receipts: Iterable[ReceiptFacts], epoch: int, epoch_ms: int) -> list[ReceiptFacts]:
    """The receipts of `epoch` that count, one per (node, request hash) (the smallest digest), in charging
    order: (started_at_ms, digest)."""
    chosen: dict[tuple[bytes, bytes], ReceiptFacts] = {}
    for facts in receipts:
        if facts.started_at_ms // epoch_ms != epoch:
            continue
        key = (facts.node_key, facts.request_hash)
        held = chosen.get(key)
        if held is None or facts.digest < held.digest:
            chosen[key] = facts
    return sorted(chosen.values(), key=lambda f: (f.started_at_ms, f.digest))


@dataclass(frozen=True)
class EpochMarket:
    """What the chain says at an epoch's closing block besides the engine's snapshot (chain.snapshot)."""

    prices: Mapping[bytes, int]
    """Model -> price per million tokens, in the payment token's smallest units (0: free)."""
    available: Mapping[bytes, int]
    """Client wallet -> the credit this epoch may debit (its credit less pending withdrawals and debits)."""
    operators: Mapping[bytes, str]
    """keccak256(binary peer id) -> the operator that registered the node."""
    pod_per_unit: Fraction
    """POD wei per smallest unit of the payment token (the pair's time-weighted price)."""
    credits_domain: TypedDomain
    """The Credits contract's EIP-712 domain, in which authorisations are signed."""


@dataclass(frozen=True)
class Payments:
    """What the epoch's receipts cost their clients and earn their operators."""

    debits: dict[bytes, int]
    """Client wallet -> whole units debited."""
    charged: dict[bytes, int]
    """Authorisation digest -> millionths charged so far, this epoch included."""
    work: dict[str, int]
    """Operator -> millionths paid for the work of its registered nodes."""
    paid: int
    unpaid: dict[str, int]
    """Why the other receipts were not paid, with counts."""

    @property
    def registered_revenue(self) -> int:
        """Millionths paid for work of registered nodes: what emission is measured against."""
        return sum(self.work.values())


def price_receipts(
    receipts: Iterable[ReceiptFacts],
    authorisations: Mapping[bytes, CreditAuthorisation],
    market: EpochMarket,
    charged_before: Mapping[bytes, int] | None = None,
    verified: Collection[bytes] = (),
) -> Payments:
    """Charge `receipts` (in charging order, see `counted_receipts`) to their clients (module rule 2).

    What decides whether a receipt is paid, but for its time and its charge, is the same for every receipt
    of a session (its authorisation, session key and model), so it is judged once per session: an epoch of
    1M receipts has ~100k. `verified` are digests of authorisations whose signatures were already checked
    in `market.credits_domain` (on their way into the evidence store): they pay from the wallet they name,
    as recovering the signer would find, without recovering it again (~70 µs each)."""
    charged = dict(charged_before or {})
    client_charged: dict[bytes, int] = {}
    work: dict[str, int] = {}
    unpaid: dict[str, int] = {}
    # authorisation digest -> paying wallet (None: invalid)
    valid: dict[bytes, bytes | None] = {d: authorisations[d].client for d in verified if d in authorisations}
    sessions: dict[tuple, _Session] = {}  # (authorisation, session key, model) -> how its receipts pay
    operators: dict[bytes, str | None] = {}  # node key -> its operator (None: unregistered)
    paid = 0
    for facts in receipts:
        key = (facts.credit, facts.client_key, facts.model)
        session = sessions.get(key)
        if session is None:
            session = sessions[key] = _session(facts, authorisations, market, valid)
        if session.wallet is None or session.expiry_ms <= facts.started_at_ms:
            reason = session.reason if session.early or session.expiry_ms > facts.started_at_ms else _EXPIRED
            unpaid[reason] = unpaid.get(reason, 0) + 1
            continue
        wallet = session.wallet
        charge = session.price * facts.tokens
        spent = charged.get(facts.credit, 0)  # type: ignore[arg-type]  # a wallet pays: a credit
        owed = client_charged.get(wallet, 0)
        if spent + charge > session.cap:
            unpaid["over the authorisation's cap"] = unpaid.get("over the authorisation's cap", 0) + 1
            continue
        if owed + charge > market.available.get(wallet, 0) * PER_MILLION:
            unpaid["over the client's credit"] = unpaid.get("over the client's credit", 0) + 1
            continue
        charged[facts.credit] = spent + charge  # type: ignore[index]  # (as above)
        client_charged[wallet] = owed + charge
        paid += 1
        if facts.node_key not in operators:
            peer_hash = keccak256(peer_id_from_public_key(facts.node_key))
            operators[facts.node_key] = market.operators.get(peer_hash)
        operator = operators[facts.node_key]
        if operator is not None:
            work[operator] = work.get(operator, 0) + charge
    debits = {wallet: owed // PER_MILLION for wallet, owed in client_charged.items() if owed >= PER_MILLION}
    return Payments(debits, charged, work, paid, unpaid)


_EXPIRED = "authorisation expired before the answer started"


@dataclass(frozen=True, slots=True)
class _Session:
    """How the receipts of one (authorisation, session key, model) pay. Unpaid (`wallet` None) for
    `reason`, which comes before the receipt's time is looked at when `early` (the checks before expiry in
    rule 2's order) and after it otherwise; else paid by `wallet`, `price` a token, within `cap`
    millionths, while started before `expiry_ms`."""

    reason: str
    early: bool
    wallet: bytes | None = None
    price: int = 0
    cap: int = 0
    expiry_ms: int = 2**63


def _session(
    facts: ReceiptFacts,
    authorisations: Mapping[bytes, CreditAuthorisation],
    market: EpochMarket,
    valid: dict[bytes, bytes | None],
) -> _Session:
    """Rule 2 for the receipts of `facts`'s session, all but their time (module docstring), in order."""
    if facts.credit is None:
        return _Session("no credit authorisation", True)
    credit = authorisations.get(facts.credit)
    if credit is None:
        return _Session("authorisation missing from the evidence", True)
    if credit.session_key != facts.client_key or credit.model != facts.model:
        return _Session("authorisation for another session key or model", True)
    expiry_ms = credit.expiry * 1000
    price = market.prices.get(facts.model, 0)
    if price == 0:
        return _Session("free model", False, expiry_ms=expiry_ms)
    if facts.credit not in valid:
        try:
            valid[facts.credit] = eth_signer(credit, market.credits_domain)
        except ProtocolError:
            valid[facts.credit] = None
    wallet = valid[facts.credit]
    if wallet is None:
        return _Session("authorisation not signed by its wallet", False, expiry_ms=expiry_ms)
    return _Session("", False, wallet, price, credit.max_credits * PER_MILLION, expiry_ms)


@dataclass(frozen=True)
class DebitBatch:
    """One `CreditDebitBatch` of an epoch: users ascending by address, their debits."""

    batch_id: int
    users: tuple[bytes, ...]
    amounts: tuple[int, ...]


def debit_batches(epoch: int, debits: Mapping[bytes, int]) -> list[DebitBatch]:
    """An epoch's debits in Credits-sized batches; batch ids are `epoch << 16 | index` (unique per epoch)."""
    ordered = sorted((wallet, amount) for wallet, amount in debits.items() if amount > 0)
    return [
        DebitBatch(
            (epoch << 16) | index,
            tuple(w for w, _ in ordered[start : start + MAX_DEBIT_BATCH]),
            tuple(a for _, a in ordered[start : start + MAX_DEBIT_BATCH]),
        )
        for index, start in enumerate(range(0, len(ordered), MAX_DEBIT_BATCH))
    ]


@dataclass(frozen=True)
class Carry:
    """What one settled epoch hands to the next: the engine's output document (state and snapshot per
    account, docs/rewards.md's exchange format), cumulative rewards, and what each credit authorisation
    has been charged so far. Empty before the first settled epoch."""

    engine: str = ""
    cumulative: Mapping[str, int] = field(default_factory=dict)
    charged: Mapping[bytes, int] = field(default_factory=dict)

    def accounts(self) -> dict[str, AccountEpoch]:
        """The engine's carried state and snapshot per account."""
        return previous_from_output(self.engine) if self.engine else {}

    def to_json(self) -> str:
        return json.dumps(
            {
                "engine": self.engine,
                "cumulative": {a: str(v) for a, v in sorted(self.cumulative.items())},
                "charged": {d.hex(): str(v) for d, v in sorted(self.charged.items())},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Carry:
        """Read `to_json`'s document; SettlementError when it is not one."""
        try:
            document = json.loads(text)
            engine = document["engine"]
            if not isinstance(engine, str):
                raise TypeError("engine is not a document")
            cumulative = {a: int(v) for a, v in document["cumulative"].items()}
            charged = {bytes.fromhex(d): int(v) for d, v in document["charged"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SettlementError(f"not a settlement carry document ({exc!r})") from exc
        return cls(engine, cumulative, charged)


@dataclass(frozen=True)
class EpochSettlement:
    """One epoch, settled: the receipts counted, the debits, the engine's close and the rewards root."""

    epoch: int
    receipt_count: int
    receipts_commitment: bytes
    payments: Payments
    emission: int
    base: dict[str, int]
    """Base reward per operator (before the engine's boost)."""
    close: EpochClose
    cumulative: dict[str, int]
    tree: RewardsTree | None
    """None while nobody has ever been paid (there is no root to sign)."""
    awards: dict[str, int]

    def paid(self, account: str) -> int:
        """What the engine paid `account` for this epoch (its boosted base reward)."""
        return self.close.accounts[account].reward if account in self.close.accounts else 0

    @property
    def debits(self) -> list[DebitBatch]:
        return debit_batches(self.epoch, self.payments.debits)

    @property
    def revenue(self) -> int:
        return sum(self.payments.debits.values())

    def carry(self) -> Carry:
        return Carry(encode_result(self.close), self.cumulative, self.payments.charged)


def settle_epoch(
    epoch: int,
    epoch_ms: int,
    receipts: Iterable[ReceiptFacts],
    authorisations: Mapping[bytes, CreditAuthorisation],
    snapshot: ChainSnapshot,
    market: EpochMarket,
    *,
    previous: Carry | None = None,
    awards: Mapping[str, int] | None = None,
    banned: Iterable[str] = (),
    params: RewardParams | None = None,
    verified_credits: Collection[bytes] = (),
    timings: dict[str, float] | None = None,
) -> EpochSettlement:
    """Settle `epoch` (module docstring): `receipts` are every receipt held for it (duplicates and other
    epochs' receipts are dropped here), `authorisations` the credit authorisations they carry by digest,
    `snapshot` and `market` the chain at the closing block, `previous` the last settled epoch's carry,
    `awards` protocol rewards (wei per account) paid beside the engine, `banned` accounts suspended off
    chain. `params` defaults to the snapshot's (the ParamsRegistry at the closing block).
    `verified_credits`: authorisations already verified in the market's Credits domain (`price_receipts`);
    the result is the same with or without them. `timings`, when
    given, receives the seconds spent de-duplicating and pricing, in the engine, and on the tree."""
    params = params or snapshot.params
    previous = previous or Carry()
    started = time.perf_counter()
    counted = counted_receipts(receipts, epoch, epoch_ms)
    payments = price_receipts(counted, authorisations, market, previous.charged, verified_credits)
    priced = time.perf_counter()
    emitted = emission(payments.registered_revenue, market.pod_per_unit, params)
    rewards = base_rewards(payments.work, emitted)
    inputs = epoch_inputs(snapshot, rewards, previous=previous.accounts(), banned=banned)
    close = close_epoch(inputs, params)
    cumulative = dict(previous.cumulative)
    awarded = {checked_address(a): v for a, v in (awards or {}).items() if v}
    for account, result in close.accounts.items():
        if result.reward:
            cumulative[account] = cumulative.get(account, 0) + result.reward
    for account, amount in awarded.items():
        cumulative[account] = cumulative.get(account, 0) + amount
    closed = time.perf_counter()
    tree = RewardsTree.build(cumulative) if cumulative else None
    if timings is not None:
        timings.update(
            dedup_and_price=priced - started, engine=closed - priced, tree=time.perf_counter() - closed
        )
    return EpochSettlement(
        epoch=epoch,
        receipt_count=len(counted),
        receipts_commitment=receipt_commitment(f.digest for f in counted),
        payments=payments,
        emission=emitted,
        base=rewards,
        close=close,
        cumulative=cumulative,
        tree=tree,
        awards=awarded,
    )
