"""Every message that crosses the network, by area. Each is a frozen dataclass that validates on construction.

Field units are in the names: `*_ms` milliseconds (durations) or Unix milliseconds (`*_at_ms`), `expiry` Unix
seconds (what a contract compares with block.timestamp), `*_milli` thousandths, `*_micro` millionths.
Hashes are 32 bytes: `model` is the hash of the model manifest a pool serves.

Gossiped records (heartbeat, attestation, hardware) are open: they tolerate unknown fields so peers can add
fields without a new version. Everything that is settled, hashed or countersigned is closed: its fields are
exactly these.

Messages a contract checks carry an Ethereum signature over their EIP-712 struct (see `eth`): use
`eth_sign(Cls, account, domain, **fields)` to make one and `eth_signer(msg, domain)` to check one;
`eth_digest(Cls, domain, get)` is the digest both sign and check, for whoever files or orders signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from protocols import eth
from protocols.errors import SchemaError, SignatureError
from protocols.schema import (
    U256,
    Bool,
    Bytes,
    Choice,
    Maybe,
    Message,
    Nested,
    Record,
    Seq,
    SInt,
    Text,
    UInt,
    encode_message,
    message,
    record,
)

__all__ = [
    "STRIKE_REASONS",
    "AnswerEvidence",
    "BanNotice",
    "BenchmarkAttestation",
    "ChatMessage",
    "CountersignedReceipt",
    "CreditAuthorisation",
    "CreditDebitSignature",
    "HardwareSummary",
    "HeartbeatRequest",
    "InferenceRequest",
    "NodeStanding",
    "OperatorBinding",
    "PoolAddresses",
    "PoolHeartbeat",
    "Receipt",
    "ReceiptAck",
    "ReceiptBatch",
    "ReceiptBatchAck",
    "ReceiptDigests",
    "ReceiptSyncRequest",
    "ReceiptVerdict",
    "ResponseChunk",
    "ResponseEnd",
    "RewardsTreePage",
    "RewardsTreeRequest",
    "SettlementProposal",
    "SettlementSignature",
    "StrikeDecisionSignature",
    "StrikeReport",
    "TokenizerFileChunk",
    "TokenizerFileRequest",
    "UserReport",
    "ValidatorAnnouncement",
    "eth_digest",
    "eth_sign",
    "eth_signer",
    "evidence_hash",
]

ADDRESS = Bytes(20)
HASH = Bytes(32)
KEY = Bytes(32)  # an Ed25519 or X25519 public key
ID = Bytes(16)
ETH_SIGNATURE = Bytes(65)
ED25519_SIGNATURE = Bytes(64)
PEER_ID = Bytes(min_size=2, max_size=64)
TIME = UInt(64)
SHORT_TEXT = Text(128)
FINISH = Choice("stop", "length", "cancelled", "error")
MAX_TOKENS_PER_CHUNK = 4096
MAX_CHUNK_TEXT_BYTES = 64 * 1024
MAX_TOP_LOGPROBS_PER_CHUNK = 4096  # (token id, logprob) alternatives in one chunk, all its tokens together
MODEL_NAME = Text(128)
MAX_SIGNED_RECEIPT = 4096
MAX_COUNTERSIGNED_RECEIPT = MAX_SIGNED_RECEIPT + 128  # the envelope, the countersignature, the framing
MAX_RECEIPT_BATCH = 256  # receipts per submission or sync batch (at most ~1.1 MB, within codec limits)
MAX_SYNC_DIGESTS = 4096  # digests per page of a sync listing (128 KiB)
MAX_TREE_PAGE = 2048  # accounts per page of a rewards tree (about 100 KiB)
MAX_TOKENIZER_CHUNK = 256 * 1024  # bytes of a tokenizer file per TokenizerFileChunk

DAY_MS = 24 * 3600 * 1000
MAX_VALIDATORS = 100
"""The most members a validator set may have (ValidatorQuorum.MAX_VALIDATORS)."""

# A node's standing with a validator and its uint8 code in the EIP-712 NodeStanding.
STANDINGS: dict[str, int] = {
    "good": 1,  # its sampled answers pass
    "suspect": 2,  # a failed check or a user report: sampled more often, not yet struck
    "excluded": 3,  # struck: temporarily excluded from routing
    "banned": 4,  # banned (see BanNotice)
}
STANDING = Choice(*STANDINGS)

# Strike reasons and their uint8 codes in the EIP-712 StrikeReport (codes are part of the contract ABI).
STRIKE_REASONS: dict[str, int] = {
    "wrong_model": 1,  # logprob fingerprint does not match the advertised model
    "tokenizer_mismatch": 2,  # re-tokenised output disagrees with the token ids/counts the node claimed
    "too_slow": 3,  # below the model's minimum tokens per second
    "too_fast": 4,  # above the model's plausible maximum: a smaller model or precomputed text
    "bad_receipt": 5,  # a receipt that contradicts what was served
    "unavailable": 6,  # advertised capacity but did not answer
    "fabricated_output": 7,  # output not produced by the model for that prompt
    "user_report": 8,  # a user's report that a validator confirmed
    "false_benchmark": 9,  # delivers far below the speed its own signed benchmark attestation claims
}
STRIKE_REASON = Choice(*STRIKE_REASONS)


# ---------------------------------------------------------------------------------------------- eth-signed


class _EthSigned(Record):
    """A record carrying an Ethereum signature over an EIP-712 struct of its other fields."""

    __slots__ = ()
    EIP712: ClassVar[eth.Struct]
    SIGNER_FIELD: ClassVar[str]
    if TYPE_CHECKING:  # what every subclass declares (its own fields, a `signature` among them)
        signature: bytes

        def __init__(self, **fields: Any) -> None: ...

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        """The EIP-712 struct values, reading this record's fields through `get(name)`."""
        raise NotImplementedError


T = TypeVar("T", bound=_EthSigned)


def eth_sign(cls: type[T], account: eth.EthAccount, domain: eth.TypedDomain, **fields: Any) -> T:
    """Build a `cls` signed by `account`; `fields` are all of its fields but `signature`.

    Raises SchemaError if the fields are invalid or name another signer than `account`.
    """
    if fields.get(cls.SIGNER_FIELD) != account.address:
        raise SchemaError(f"{cls.__name__}.{cls.SIGNER_FIELD} must be the signing account's address")
    unsigned = cls(**fields, signature=b"\0" * 65)  # validate the fields before signing them
    signature = account.sign_digest(eth_digest(cls, domain, lambda name: getattr(unsigned, name)))
    return cls(**fields, signature=signature)


def eth_digest(cls: type[_EthSigned], domain: eth.TypedDomain, get: Callable[[str], Any]) -> bytes:
    """The EIP-712 digest a `cls` signs in `domain`, its fields read through `get(name)` (the signer's and
    the signature are not read)."""
    return eth.typed_digest(domain, cls.EIP712, cls.typed_values(get))


def eth_signer(msg: _EthSigned, domain: eth.TypedDomain) -> bytes:
    """Check `msg`'s signature against `domain`; return the signer's address (which `msg` itself names).

    Raises SignatureError when the signature is malformed or not by the address in `msg`.
    """
    signer = eth.recover_digest(eth_digest(type(msg), domain, lambda name: getattr(msg, name)), msg.signature)
    if signer != getattr(msg, type(msg).SIGNER_FIELD):
        raise SignatureError(f"{type(msg).__name__} is not signed by the address it names")
    return signer


@record
class OperatorBinding(_EthSigned):
    """An operator wallet's binding of a node: the signature `Bonding.registerNode` checks, shown off chain
    too. `peer_id_hash` is keccak256 of the node's binary peer id; `nonce` the operator's binding nonce."""

    EIP712 = eth.NODE_BINDING
    SIGNER_FIELD = "operator"
    operator: Annotated[bytes, ADDRESS]
    peer_id_hash: Annotated[bytes, HASH]
    nonce: Annotated[int, U256()]
    signature: Annotated[bytes, ETH_SIGNATURE]

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {"operator": get("operator"), "peerIdHash": get("peer_id_hash"), "nonce": get("nonce")}


@record
class CreditAuthorisation(_EthSigned):
    """A client wallet lets `session_key` (its Ed25519 key) spend up to `max_credits` on `model`."""

    EIP712 = eth.CREDIT_AUTHORISATION
    SIGNER_FIELD = "client"
    client: Annotated[bytes, ADDRESS]
    session_key: Annotated[bytes, KEY]
    model: Annotated[bytes, HASH]
    max_credits: Annotated[int, U256()]
    nonce: Annotated[int, U256()]
    expiry: Annotated[int, UInt(64)]
    signature: Annotated[bytes, ETH_SIGNATURE]

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {
            "client": get("client"),
            "sessionKey": get("session_key"),
            "model": get("model"),
            "maxCredits": get("max_credits"),
            "nonce": get("nonce"),
            "expiry": get("expiry"),
        }


def _check_validator_set(members: Sequence[bytes], weights: Sequence[int], name: str) -> None:
    """The shape ValidatorQuorum.checkValidatorSet requires: one positive weight per member, members
    strictly ascending (so distinct)."""
    if len(members) != len(weights):
        raise SchemaError(f"{name}: one weight per validator")
    if any(a >= b for a, b in pairwise(members)):
        raise SchemaError(f"{name}: validators must be strictly ascending")
    if any(weight == 0 for weight in weights):
        raise SchemaError(f"{name}: validator weights must be positive")


def evidence_hash(evidence: Sequence[bytes]) -> bytes:
    """keccak256 over the keccak256 of each evidence item, in order (cheap to recompute in Solidity)."""
    return eth.keccak256(b"".join(eth.keccak256(item) for item in evidence))


@message("validator.strike", 1)
class StrikeReport(Message, _EthSigned):
    """A validator's signed finding against a node. `evidence` (signed receipts, responses) may be left out
    where only the hash travels, e.g. on chain; when present it must match `evidence_hash`."""

    EIP712 = eth.STRIKE_REPORT
    SIGNER_FIELD = "validator"
    MAX_TTL_MS = 30 * DAY_MS
    validator: Annotated[bytes, ADDRESS]
    node_key: Annotated[bytes, KEY]
    operator: Annotated[bytes, ADDRESS]
    model: Annotated[bytes, HASH]
    epoch: Annotated[int, UInt(64)]
    reason: Annotated[str, STRIKE_REASON]
    severity: Annotated[int, UInt(8, max_value=10)]
    evidence_hash: Annotated[bytes, HASH]
    evidence: Annotated[tuple[bytes, ...], Seq(Bytes(max_size=64 * 1024), max_len=16)] = ()
    signature: Annotated[bytes, ETH_SIGNATURE]

    def _check(self) -> None:
        if self.evidence and evidence_hash(self.evidence) != self.evidence_hash:
            raise SchemaError("StrikeReport.evidence does not match evidence_hash")

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {
            "validator": get("validator"),
            "nodeKey": get("node_key"),
            "operator": get("operator"),
            "model": get("model"),
            "epoch": get("epoch"),
            "reason": STRIKE_REASONS[get("reason")],
            "severity": get("severity"),
            "evidenceHash": get("evidence_hash"),
        }


@message("validator.standing", 1)
class NodeStanding(Message, _EthSigned):
    """A validator's published verdict on one node, from the answers it sampled: routers prefer nodes in
    good standing and may require a minimum. `suspicion_micro` is the validator's probability (in
    millionths) that the node cheats; `checks` and `failures` count its sampled answers this epoch."""

    EIP712 = eth.NODE_STANDING
    SIGNER_FIELD = "validator"
    MAX_TTL_MS = 2 * DAY_MS
    validator: Annotated[bytes, ADDRESS]
    node_key: Annotated[bytes, KEY]
    model: Annotated[bytes, HASH]
    epoch: Annotated[int, UInt(64)]
    checks: Annotated[int, UInt(32)]
    failures: Annotated[int, UInt(32)]
    suspicion_micro: Annotated[int, UInt(32, max_value=1_000_000)]
    status: Annotated[str, STANDING]
    signature: Annotated[bytes, ETH_SIGNATURE]

    def _check(self) -> None:
        if self.failures > self.checks:
            raise SchemaError("NodeStanding.failures cannot exceed checks")

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {
            "validator": get("validator"),
            "nodeKey": get("node_key"),
            "model": get("model"),
            "epoch": get("epoch"),
            "checks": get("checks"),
            "failures": get("failures"),
            "suspicionMicro": get("suspicion_micro"),
            "status": STANDINGS[get("status")],
        }


@message("validator.user_report", 1)
class UserReport(Message):
    """A user's flag on an answer they received, by its request id: validators sample that node more, and a
    strike that follows rewards `reporter` (an address, or None for no reward). Signed in an envelope by
    the session key that countersigned `receipt`, which proves the reporter was the client of that answer;
    the prompt and answer stay private (only the receipt, which holds hashes and counts, travels)."""

    MAX_TTL_MS = 7 * DAY_MS
    request_id: Annotated[bytes, ID]
    node_key: Annotated[bytes, KEY]
    model: Annotated[bytes, HASH]
    receipt: Annotated[bytes, Bytes(max_size=2 * MAX_SIGNED_RECEIPT)]  # the CountersignedReceipt encoding
    reason: Annotated[str, Text(1024, min_bytes=1)]
    reporter: Annotated[bytes | None, Maybe(ADDRESS)] = None


@message("validator.strike.decision", 1)
class StrikeDecisionSignature(Message, _EthSigned):
    """One validator's signature on a slashing decision, as `Slashing` checks a quorum of them. The
    decision's `evidence_hash` names the strike reports behind it (see `BanNotice.evidence_hash`)."""

    EIP712 = eth.STRIKE_DECISION
    SIGNER_FIELD = "validator"
    MAX_TTL_MS = 30 * DAY_MS
    validator: Annotated[bytes, ADDRESS]
    offender: Annotated[bytes, ADDRESS]
    evidence_hash: Annotated[bytes, HASH]
    slash_bps: Annotated[int, UInt(16, max_value=10_000)]
    reporter: Annotated[bytes, ADDRESS]  # the zero address: no reporter reward
    deadline: Annotated[int, UInt(64)]  # Unix seconds
    signature: Annotated[bytes, ETH_SIGNATURE]

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {
            "offender": get("offender"),
            "evidenceHash": get("evidence_hash"),
            "slashBps": get("slash_bps"),
            "reporter": get("reporter"),
            "deadline": get("deadline"),
        }


@message("settlement.signature", 1)
class SettlementSignature(Message, _EthSigned):
    """One validator's signature on an epoch's rewards root and the validator set elected for the next
    epochs (`next_validators` ascending, `next_weights` in stkPOD shares), as `RewardsDistributor` checks a
    quorum of them."""

    EIP712 = eth.EPOCH_ROOT
    SIGNER_FIELD = "validator"
    MAX_TTL_MS = 30 * DAY_MS
    validator: Annotated[bytes, ADDRESS]
    epoch: Annotated[int, UInt(64)]
    rewards_root: Annotated[bytes, HASH]
    total_rewards: Annotated[int, U256()]
    next_validators: Annotated[tuple[bytes, ...], Seq(ADDRESS, min_len=1, max_len=MAX_VALIDATORS)]
    next_weights: Annotated[tuple[int, ...], Seq(U256(), min_len=1, max_len=MAX_VALIDATORS)]
    deadline: Annotated[int, UInt(64)]  # Unix seconds
    signature: Annotated[bytes, ETH_SIGNATURE]

    def _check(self) -> None:
        _check_validator_set(self.next_validators, self.next_weights, "SettlementSignature")

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {
            "epoch": get("epoch"),
            "root": get("rewards_root"),
            "total": get("total_rewards"),
            "validators": get("next_validators"),
            "weights": get("next_weights"),
            "deadline": get("deadline"),
        }


@message("settlement.credit_debits", 1)
class CreditDebitSignature(Message, _EthSigned):
    """One validator's signature on a batch of credit debits, as `Credits` checks a quorum of them."""

    EIP712 = eth.CREDIT_DEBIT_BATCH
    SIGNER_FIELD = "validator"
    MAX_TTL_MS = 30 * DAY_MS
    validator: Annotated[bytes, ADDRESS]
    batch_id: Annotated[int, U256()]
    users: Annotated[tuple[bytes, ...], Seq(ADDRESS, max_len=4096)]
    amounts: Annotated[tuple[int, ...], Seq(U256(), max_len=4096)]
    deadline: Annotated[int, UInt(64)]  # Unix seconds
    signature: Annotated[bytes, ETH_SIGNATURE]

    def _check(self) -> None:
        if len(self.users) != len(self.amounts):
            raise SchemaError("CreditDebitSignature.users and amounts must have the same length")

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {
            "batchId": get("batch_id"),
            "users": get("users"),
            "amounts": get("amounts"),
            "deadline": get("deadline"),
        }


# ---------------------------------------------------------------------------------------------------- pool


@record(open=True)
class HardwareSummary(Record):
    backend: Annotated[str, Choice("cuda", "rocm", "metal", "cpu", "other")]
    gpu_name: Annotated[str, SHORT_TEXT]
    gpu_count: Annotated[int, UInt(8)]
    vram_mib: Annotated[int, UInt(32)]
    cpu_cores: Annotated[int, UInt(16)]
    ram_mib: Annotated[int, UInt(32)]


@message("pool.heartbeat", 1, open=True)
class PoolHeartbeat(Message):
    """A node's periodic announcement to its pool's topic. `binding` must be for `peer_id` (checked here);
    the envelope signer must be `peer_id`'s key, and the binding's signature is checked against the Bonding
    contract's domain (both by `pool`, which knows the domain). A node no operator has registered sends no
    binding: it serves, but is *unregistered* (earns nothing; clients may leave it out). Receivers order a
    node's heartbeats by (`started_at_ms`, `seq`): a restarted node starts at seq 1 again with a new
    encryption key. Each lives at least 15 s, however often they are sent, so a few seconds of clock skew and
    gossip hops never drop it."""

    MAX_TTL_MS = 5 * 60 * 1000
    MIN_TTL_MS = 15_000
    peer_id: Annotated[bytes, PEER_ID]
    binding: Annotated[OperatorBinding | None, Maybe(Nested(OperatorBinding))] = None
    model: Annotated[bytes, HASH]
    encryption_key: Annotated[bytes, KEY]
    capacity: Annotated[int, UInt(16)]
    load: Annotated[int, UInt(16)]
    queued: Annotated[int, UInt(32)]
    hardware: Annotated[HardwareSummary, Nested(HardwareSummary)]
    software_version: Annotated[str, Text(64, min_bytes=1)]
    started_at_ms: Annotated[int, TIME]
    sent_at_ms: Annotated[int, TIME]
    seq: Annotated[int, UInt(64)]
    # The served manifest's name, as the node claims it: how clients resolve a model name to its id (see
    # `ids.model_name_topic`). Only the model id is authoritative; nodes older than this field send none.
    model_name: Annotated[str, MODEL_NAME] = ""

    def _check(self) -> None:
        if self.binding is not None and self.binding.peer_id_hash != eth.keccak256(self.peer_id):
            raise SchemaError("PoolHeartbeat.binding is for another peer id")


@message("pool.heartbeat.request", 1)
class HeartbeatRequest(Message):
    """A peer asks a pool member for its latest heartbeat for `model` (HEARTBEAT_PROTOCOL): answered with
    the signed `PoolHeartbeat` envelope exactly as the member gossips it, which the asker checks as gossip."""

    model: Annotated[bytes, HASH]


@message("pool.addresses", 1)
class PoolAddresses(Message):
    """A pool member's DHT record: "I serve `model`; dial me at `addrs`" (multiaddr strings, which `p2p`
    parses). Signed with the member's peer key, so the envelope's signer is the member; the newest valid
    record under its DHT key wins (p2p.records, p2p.dht)."""

    MAX_TTL_MS = DAY_MS
    model: Annotated[bytes, HASH]
    addrs: Annotated[tuple[str, ...], Seq(Text(256, min_bytes=1), min_len=1, max_len=8)]


@message("pool.attestation", 1, open=True)
class BenchmarkAttestation(Message):
    """A measured benchmark of `node_key` serving `model`, signed by whoever measured it (the node itself,
    or a validator)."""

    MAX_TTL_MS = 7 * DAY_MS
    node_key: Annotated[bytes, KEY]
    model: Annotated[bytes, HASH]
    engine: Annotated[str, Text(64, min_bytes=1)]
    engine_version: Annotated[str, Text(64)]
    hardware: Annotated[HardwareSummary, Nested(HardwareSummary)]
    prompt_tokens: Annotated[int, UInt(32)]
    output_tokens: Annotated[int, UInt(32)]
    concurrency: Annotated[int, UInt(16)]
    prefill_tps_milli: Annotated[int, UInt(64)]
    decode_tps_milli: Annotated[int, UInt(64)]
    ttft_ms: Annotated[int, UInt(32)]
    measured_at_ms: Annotated[int, TIME]


# ----------------------------------------------------------------------------------------------- inference


@record
class ChatMessage(Record):
    role: Annotated[str, Choice("system", "user", "assistant", "tool")]
    content: Annotated[str, Text(1 << 20)]


@message("inference.request", 1)
class InferenceRequest(Message):
    """What a client asks a node; signed by the client's Ed25519 session key, then sealed to the node.

    It lives at most two minutes: long enough to cross relays and wait for a busy node, short enough that a
    node's replay cache turns over quickly (nonces are kept for the lifetime, see `envelope.ReplayCache`)."""

    MAX_TTL_MS = 2 * 60 * 1000
    request_id: Annotated[bytes, ID]
    model: Annotated[bytes, HASH]
    node_key: Annotated[bytes, KEY]  # the node it is for: another node must refuse it
    messages: Annotated[tuple[ChatMessage, ...], Seq(Nested(ChatMessage), min_len=1, max_len=512)]
    max_tokens: Annotated[int, UInt(32, max_value=1 << 20)]
    temperature_milli: Annotated[int, UInt(16, max_value=10_000)] = 1000
    top_p_milli: Annotated[int, UInt(16, max_value=1000)] = 1000
    seed: Annotated[int | None, Maybe(UInt(64))] = None
    stop: Annotated[tuple[str, ...], Seq(Text(256, min_bytes=1), max_len=16)] = ()
    top_logprobs: Annotated[int, UInt(8, max_value=20)] = 0
    credit: Annotated[CreditAuthorisation | None, Maybe(Nested(CreditAuthorisation))] = None


@message("inference.chunk", 1)
class ResponseChunk(Message):
    """A piece of the streamed answer. `logprobs_micro`, when sent, has one entry per token id. When the
    request asked for `top_logprobs` = k alternatives, `top_ids` and `top_logprobs_micro` hold them for
    every token id in order, k each, best first: token i's are at [i*k, (i+1)*k)."""

    seq: Annotated[int, UInt(32)]
    text: Annotated[str, Text(MAX_CHUNK_TEXT_BYTES)]
    token_ids: Annotated[tuple[int, ...], Seq(UInt(32), max_len=MAX_TOKENS_PER_CHUNK)] = ()
    logprobs_micro: Annotated[tuple[int, ...], Seq(SInt(64), max_len=MAX_TOKENS_PER_CHUNK)] = ()
    top_ids: Annotated[tuple[int, ...], Seq(UInt(32), max_len=MAX_TOP_LOGPROBS_PER_CHUNK)] = ()
    top_logprobs_micro: Annotated[tuple[int, ...], Seq(SInt(64), max_len=MAX_TOP_LOGPROBS_PER_CHUNK)] = ()

    def _check(self) -> None:
        if self.logprobs_micro and len(self.logprobs_micro) != len(self.token_ids):
            raise SchemaError("ResponseChunk.logprobs_micro must have one entry per token id")
        if len(self.top_ids) != len(self.top_logprobs_micro):
            raise SchemaError("ResponseChunk.top_ids and top_logprobs_micro must have the same length")
        if self.top_ids and (not self.token_ids or len(self.top_ids) % len(self.token_ids)):
            raise SchemaError("ResponseChunk.top_ids must hold the same number of alternatives per token id")

    @property
    def top_per_token(self) -> int:
        """k, the alternatives sent per token id (0 when none were)."""
        return len(self.top_ids) // len(self.token_ids) if self.top_ids else 0


@message("inference.end", 1)
class ResponseEnd(Message):
    """The last message of an answer: why it ended, and the node's signed receipt (a `Receipt` envelope)."""

    seq: Annotated[int, UInt(32)]
    finish_reason: Annotated[str, FINISH]
    error: Annotated[str | None, Maybe(Text(1024))] = None
    receipt: Annotated[bytes | None, Maybe(Bytes(max_size=MAX_SIGNED_RECEIPT))] = None


@message("inference.receipt", 1)
class Receipt(Message):
    """The unit of work: a node's signed account of one answer. Countersigned by the client, it is what the
    client pays for and the node earns base rewards on; the request and the answer stay private (only
    their hashes and the request's length are here), and the hash of the answer lets a validator prove to
    others what the node sent it.

    Its counts are bounded by what the request allows, so no countersignature can make them larger:
    `tokens_out` by the request's `max_tokens`, and `tokens_in` by `request_bytes`, the length of the
    signed request (every token of a byte-level tokenizer covers at least one byte of the prompt, and the
    envelope's own fields outweigh a chat template's extra tokens). `credit` is the client wallet's
    authorisation that pays for the answer, carried whole so that settlement re-checks it (signature,
    session key, model, expiry against `started_at_ms`, the node's clock); `client` names that wallet
    and is present exactly when `credit` is."""

    MAX_TTL_MS = 30 * DAY_MS
    request_id: Annotated[bytes, ID]
    request_hash: Annotated[bytes, HASH]  # sha256 of the client's signed request envelope
    request_bytes: Annotated[int, UInt(32)]  # the length of that envelope
    model: Annotated[bytes, HASH]
    client_key: Annotated[bytes, KEY]
    client: Annotated[bytes | None, Maybe(ADDRESS)] = None  # the paying wallet: `credit.client`
    credit: Annotated[CreditAuthorisation | None, Maybe(Nested(CreditAuthorisation))] = None
    max_tokens: Annotated[int, UInt(32, max_value=1 << 20)]  # the request's bound on tokens_out
    tokens_in: Annotated[int, UInt(32)]
    tokens_out: Annotated[int, UInt(32)]
    output_hash: Annotated[bytes, HASH]  # commits to the answer's chunks as sent (inference.output_hash)
    started_at_ms: Annotated[int, TIME]
    first_token_ms: Annotated[int, UInt(32)]
    duration_ms: Annotated[int, UInt(32)]
    finish_reason: Annotated[str, FINISH]

    def _check(self) -> None:
        if self.tokens_out > self.max_tokens:
            raise SchemaError("Receipt.tokens_out exceeds the request's max_tokens")
        if self.tokens_in > self.request_bytes:
            raise SchemaError("Receipt.tokens_in exceeds the request's length in bytes")
        if (self.credit.client if self.credit is not None else None) != self.client:
            raise SchemaError("Receipt.client must be the wallet of its credit authorisation")


@message("inference.receipt.countersigned", 1)
class CountersignedReceipt(Message):
    """A node-signed receipt envelope plus the client's Ed25519 signature over it (see `inference`)."""

    receipt: Annotated[bytes, Bytes(max_size=MAX_SIGNED_RECEIPT)]
    client_signature: Annotated[bytes, ED25519_SIGNATURE]


@message("inference.receipt.ack", 1)
class ReceiptAck(Message):
    """The node's last frame: whether it committed the client's countersigned receipt to durable storage.
    `receipt_digest` is sha256 of the countersigned receipt bytes the node received."""

    receipt_digest: Annotated[bytes, HASH]
    stored: Annotated[bool, Bool()]
    error: Annotated[str | None, Maybe(Text(1024))] = None

    def _check(self) -> None:
        if self.stored == (self.error is not None):
            raise SchemaError("ReceiptAck has an error exactly when the receipt was not stored")


@message("model.tokenizer.request", 1)
class TokenizerFileRequest(Message):
    """A client asks a node for one file of a model it serves (TOKENIZER_PROTOCOL, one file per stream):
    `path` is the manifest (`protocols.tokenizers.MANIFEST_FILE`, sent as the canonical JSON whose sha256
    is `model`) or a tokenizer file the manifest lists. Answered with `TokenizerFileChunk`s."""

    model: Annotated[bytes, HASH]
    path: Annotated[str, Text(256, min_bytes=1)]


@message("model.tokenizer.chunk", 1)
class TokenizerFileChunk(Message):
    """A piece of the file asked for, in order: every piece names the whole file's `size`, and the pieces
    end once that many bytes came (one empty piece for an empty file). A refusal (a model or file not
    served, too large, busy) is one piece with `error`, no data and size 0."""

    size: Annotated[int, UInt(32)]
    data: Annotated[bytes, Bytes(max_size=MAX_TOKENIZER_CHUNK)] = b""
    error: Annotated[str | None, Maybe(Text(256))] = None

    def _check(self) -> None:
        if self.error is not None and (self.data or self.size):
            raise SchemaError("TokenizerFileChunk carries no data with an error")


# ---------------------------------------------------------------------------------------------- settlement
# Receipts travel from nodes to validators (RECEIPT_PROTOCOL) and between validators (RECEIPT_SYNC_PROTOCOL)
# as these unsigned messages: each receipt inside is its own signed evidence, and the stream's peer is
# authenticated by the transport.


@message("settlement.receipts", 1)
class ReceiptBatch(Message):
    """Countersigned receipts (`CountersignedReceipt` encodings): a node's submission to a validator, or a
    validator's answer to another's request for receipts it lacks."""

    receipts: Annotated[
        tuple[bytes, ...], Seq(Bytes(max_size=MAX_COUNTERSIGNED_RECEIPT), max_len=MAX_RECEIPT_BATCH)
    ]


@record
class ReceiptVerdict(Record):
    """What a validator did with one submitted receipt. `digest` is sha256 of the bytes as submitted;
    `stored` and `duplicate` are final (the receipt is held, or was already), `refused` says why in
    `reason` and is final too unless the reason says to retry."""

    digest: Annotated[bytes, HASH]
    status: Annotated[str, Choice("stored", "duplicate", "refused")]
    reason: Annotated[str | None, Maybe(Text(256))] = None

    def _check(self) -> None:
        if (self.status == "refused") != (self.reason is not None):
            raise SchemaError("ReceiptVerdict has a reason exactly when the receipt was refused")


@message("settlement.receipts.ack", 1)
class ReceiptBatchAck(Message):
    """The validator's answer to a `ReceiptBatch`, one verdict per receipt in the batch's order, sent only
    once every stored receipt is committed to durable storage."""

    verdicts: Annotated[tuple[ReceiptVerdict, ...], Seq(Nested(ReceiptVerdict), max_len=MAX_RECEIPT_BATCH)]


@message("settlement.sync.request", 1)
class ReceiptSyncRequest(Message):
    """One validator asks another about `epoch`: with `digests`, for those receipts (answered with a
    `ReceiptBatch`); without, for a page of the digests it holds, those after `after` in ascending order
    (answered with `ReceiptDigests`)."""

    epoch: Annotated[int, UInt(64)]
    after: Annotated[bytes | None, Maybe(HASH)] = None
    digests: Annotated[tuple[bytes, ...], Seq(HASH, max_len=MAX_RECEIPT_BATCH)] = ()


@message("settlement.sync.digests", 1)
class ReceiptDigests(Message):
    """A page of the receipt digests a validator holds for `epoch`, ascending; `count` and `commitment`
    describe the whole set (see validator.settlement.receipt_commitment), `more` whether pages follow."""

    epoch: Annotated[int, UInt(64)]
    count: Annotated[int, UInt(64)]
    commitment: Annotated[bytes, HASH]
    digests: Annotated[tuple[bytes, ...], Seq(HASH, max_len=MAX_SYNC_DIGESTS)]
    more: Annotated[bool, Bool()]

    def _check(self) -> None:
        if any(a >= b for a, b in pairwise(self.digests)):
            raise SchemaError("ReceiptDigests.digests must be strictly ascending")


@message("settlement.tree.request", 1)
class RewardsTreeRequest(Message):
    """A claimer asks a validator for the rewards tree of `epoch`: the page of its accounts after `after`
    (ascending; None: from the first). Answered with a `RewardsTreePage`."""

    epoch: Annotated[int, UInt(64)]
    after: Annotated[bytes | None, Maybe(ADDRESS)] = None


@message("settlement.tree.page", 1)
class RewardsTreePage(Message):
    """A page of the cumulative amounts in epoch `epoch`'s rewards tree (`root`), by ascending account;
    `total` accounts in all. A claimer rebuilds the tree from every page and checks its root against the
    chain's: a validator can withhold a tree, not forge one."""

    epoch: Annotated[int, UInt(64)]
    root: Annotated[bytes, HASH]
    total: Annotated[int, UInt(32)]
    accounts: Annotated[tuple[bytes, ...], Seq(ADDRESS, max_len=MAX_TREE_PAGE)] = ()
    amounts: Annotated[tuple[int, ...], Seq(U256(), max_len=MAX_TREE_PAGE)] = ()

    def _check(self) -> None:
        if len(self.accounts) != len(self.amounts):
            raise SchemaError("RewardsTreePage lists one amount per account")
        if any(a >= b for a, b in pairwise(self.accounts)):
            raise SchemaError("RewardsTreePage.accounts must be strictly ascending")


@message("validator.peer", 1)
class ValidatorAnnouncement(Message, _EthSigned):
    """ "Peer `peer_id`, dialled at `addrs`, speaks for validator wallet `validator` until `expiry`": the
    wallet's EIP-712 signature binds the peer (so nobody else can claim a validator's receipts), and the
    envelope around it must be signed by that peer. Nodes submit receipts to the peers of the current
    validator set, and validators fetch each other's receipts from them."""

    EIP712 = eth.VALIDATOR_PEER
    SIGNER_FIELD = "validator"
    MAX_TTL_MS = DAY_MS
    MIN_TTL_MS = 15_000
    validator: Annotated[bytes, ADDRESS]
    peer_id: Annotated[bytes, PEER_ID]
    addrs: Annotated[tuple[str, ...], Seq(Text(256, min_bytes=1), min_len=1, max_len=8)]
    expiry: Annotated[int, UInt(64)]  # Unix seconds
    signature: Annotated[bytes, ETH_SIGNATURE]

    @classmethod
    def typed_values(cls, get: Callable[[str], Any]) -> dict[str, Any]:
        return {
            "validator": get("validator"),
            "peerIdHash": eth.keccak256(get("peer_id")),
            "expiry": get("expiry"),
        }


# ---------------------------------------------------------------------------------------------- validators


@message("validator.evidence", 1)
class AnswerEvidence(Message):
    """One answer, as its client received it, which any validator can re-check: a validator's own
    challenge, or a client's real answer it shared (AUDIT_PROTOCOL; the prompt is then the user's).
    `request` is the InferenceRequest envelope the client's session key signed, `chunks` the answer's
    ResponseChunk messages as decrypted, in order, and `receipt` the node-signed Receipt envelope, whose
    `request_hash` names the request and whose `output_hash` commits to the chunks
    (`inference.output_hash`). `attestation` is the node's signed BenchmarkAttestation envelope when a
    speed check compared against it. The `observed_*` timings are the client's own clock, its word rather
    than the node's (only a validator's own are used for speed). Strike reports carry it as their one
    evidence item, so it must fit a gossip message (64 KiB)."""

    request: Annotated[bytes, Bytes(max_size=32 * 1024)]
    chunks: Annotated[tuple[bytes, ...], Seq(Bytes(max_size=16 * 1024), max_len=2048)]
    receipt: Annotated[bytes, Bytes(max_size=MAX_SIGNED_RECEIPT)]
    attestation: Annotated[bytes | None, Maybe(Bytes(max_size=4096))] = None
    observed_first_token_ms: Annotated[int, UInt(32)]
    observed_duration_ms: Annotated[int, UInt(32)]


@message("validator.ban", 1)
class BanNotice(Message):
    """A ban of a node (and the operator's binding to it), carrying the strike reports that justify it so
    every peer can check them. `until_epoch` 0 means permanent."""

    MAX_TTL_MS = 365 * DAY_MS
    node_key: Annotated[bytes, KEY]
    operator: Annotated[bytes, ADDRESS]
    model: Annotated[bytes, HASH]
    epoch: Annotated[int, UInt(64)]
    until_epoch: Annotated[int, UInt(64)]
    reason: Annotated[str, STRIKE_REASON]
    strikes: Annotated[tuple[StrikeReport, ...], Seq(Nested(StrikeReport), min_len=1, max_len=64)]

    def _check(self) -> None:
        for strike in self.strikes:
            if strike.node_key != self.node_key or strike.operator != self.operator:
                raise SchemaError("BanNotice.strikes must all be about the banned node and operator")

    def evidence_hash(self) -> bytes:
        """The evidence hash for a StrikeDecision on these strikes: `evidence_hash` of their encodings."""
        return evidence_hash([encode_message(strike) for strike in self.strikes])


@message("settlement.proposal", 1)
class SettlementProposal(Message):
    """An epoch's settlement as computed by the reward engine: `inputs_hash` and `receipts_root` let any
    validator recompute the same root from the same signed receipts before signing a SettlementSignature."""

    MAX_TTL_MS = 30 * DAY_MS
    epoch: Annotated[int, UInt(64)]
    rewards_root: Annotated[bytes, HASH]
    total_rewards: Annotated[int, U256()]
    next_validators: Annotated[tuple[bytes, ...], Seq(ADDRESS, min_len=1, max_len=MAX_VALIDATORS)]
    next_weights: Annotated[tuple[int, ...], Seq(U256(), min_len=1, max_len=MAX_VALIDATORS)]
    deadline: Annotated[int, UInt(64)]  # Unix seconds, as signed in SettlementSignature
    receipts_root: Annotated[bytes, HASH]
    receipt_count: Annotated[int, UInt(64)]
    inputs_hash: Annotated[bytes, HASH]

    def _check(self) -> None:
        _check_validator_set(self.next_validators, self.next_weights, "SettlementProposal")
