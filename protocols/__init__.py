"""Wire formats of the Dolphin Network: sans-IO, no sockets, no event loop.

Everything that crosses the network is defined, encoded, signed and encrypted here, so that every other
part (p2p, pool, node, validator, chain) speaks through one small, hostile-input-proof library. Nothing here
imports trio, libp2p or web3, and every decoder raises `ProtocolError` subclasses and nothing else.

Modules:
    errors     the error family: ProtocolError and one subclass per kind of failure
    codec      msgpack with size/depth/length/object-count limits, no floats or ext types; bounded zstd
    framing    unsigned-varint length-prefixed frames and a sans-IO frame decoder
    schema     how schemas are declared (frozen, validating dataclasses), encoded and decoded; the registry
    messages   every message: pool heartbeat, attestation and DHT record, inference request/chunk/end/
               receipt (committing to the answer), validator answer evidence, strike report and decision,
               node standing, user report, ban notice, settlement, credit debits; receipt batches and
               their sync between validators; validator announcements; tokenizer file requests and
               pieces
    keys       Ed25519 identities and libp2p peer ids, X25519 encryption keys
    envelope   Ed25519-signed envelopes with per-type domains, validity windows, and the replay cache
               (per-signer quotas, a "busy" refusal when full)
    eth        EIP-712 hashing, signing and recovery; the structs the contracts check
    e2e        requests sealed to a node's X25519 key; the secretstream answer stream; both padded to
               power-of-two sizes
    inference  client and node ends of one exchange as state machines; token batching; countersigned
               receipts; the answer hash receipts commit to
    ids        libp2p protocol ids, GossipSub topics, the DHT prefix
    tokenizers  a model's tokenizer files as nodes serve them: which, the caps, and the client's checks
                against the model id
    testing    deterministic keys and an in-memory exchange pair, for tests of every part
"""

from protocols.codec import DEFAULT_LIMITS, Limits
from protocols.e2e import StreamOpener, StreamSealer, open_sealed, seal
from protocols.envelope import ReplayCache, Signed, open_signed, sign
from protocols.errors import (
    BusyError,
    DecodeError,
    DecryptError,
    ExpiredError,
    LimitError,
    ProtocolError,
    ReplayError,
    SchemaError,
    SignatureError,
    StreamError,
)
from protocols.eth import EthAccount, TypedDomain
from protocols.framing import FrameDecoder, encode_frame
from protocols.inference import (
    ClientExchange,
    NodeExchange,
    TokenBatcher,
    VerifiedReceipt,
    countersign_receipt,
    verify_countersigned_receipt,
)
from protocols.keys import EncryptionKeyPair, Identity, peer_id_from_public_key, peer_id_to_text
from protocols.messages import (
    STRIKE_REASONS,
    AnswerEvidence,
    BanNotice,
    BenchmarkAttestation,
    ChatMessage,
    CountersignedReceipt,
    CreditAuthorisation,
    CreditDebitSignature,
    HardwareSummary,
    InferenceRequest,
    OperatorBinding,
    PoolAddresses,
    PoolHeartbeat,
    Receipt,
    ResponseChunk,
    ResponseEnd,
    SettlementProposal,
    SettlementSignature,
    StrikeDecisionSignature,
    StrikeReport,
    eth_digest,
    eth_sign,
    eth_signer,
    evidence_hash,
)
from protocols.schema import Message, decode_message, encode_message

__all__ = [
    "DEFAULT_LIMITS",
    "STRIKE_REASONS",
    "AnswerEvidence",
    "BanNotice",
    "BenchmarkAttestation",
    "BusyError",
    "ChatMessage",
    "ClientExchange",
    "CountersignedReceipt",
    "CreditAuthorisation",
    "CreditDebitSignature",
    "DecodeError",
    "DecryptError",
    "EncryptionKeyPair",
    "EthAccount",
    "ExpiredError",
    "FrameDecoder",
    "HardwareSummary",
    "Identity",
    "InferenceRequest",
    "LimitError",
    "Limits",
    "Message",
    "NodeExchange",
    "OperatorBinding",
    "PoolAddresses",
    "PoolHeartbeat",
    "ProtocolError",
    "Receipt",
    "ReplayCache",
    "ReplayError",
    "ResponseChunk",
    "ResponseEnd",
    "SchemaError",
    "SettlementProposal",
    "SettlementSignature",
    "SignatureError",
    "Signed",
    "StreamError",
    "StreamOpener",
    "StreamSealer",
    "StrikeDecisionSignature",
    "StrikeReport",
    "TokenBatcher",
    "TypedDomain",
    "VerifiedReceipt",
    "countersign_receipt",
    "decode_message",
    "encode_frame",
    "encode_message",
    "eth_digest",
    "eth_sign",
    "eth_signer",
    "evidence_hash",
    "open_sealed",
    "open_signed",
    "peer_id_from_public_key",
    "peer_id_to_text",
    "seal",
    "sign",
    "verify_countersigned_receipt",
]
