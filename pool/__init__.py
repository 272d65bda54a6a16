"""The client side: who serves a model, which node answers, failover, the light client and the gateway.

- `contact`: `NodeContact`, how a client addresses one node
- `client`: one end-to-end encrypted inference with one node (`complete`, `Completion`, `AnswerPiece`)
- `membership`: `PoolView`, a model's members from validated heartbeats; `find_member` by peer id
- `attestations`: the attestation topic's validator and `AttestationBook` (attested speeds)
- `standing`: `StandingBook`, validators' `NodeStanding` verdicts
- `bans`: the ban topic's validator and `BanList`
- `chainfacts`: `ChainFacts`, validators, registrations and bonds read off the event loop and cached
- `watch`: `PoolWatcher`, all of the above per model, model names; `MemberDialer`, discovery through the DHT
- `routing`: `Router` (pure): eligibility, power of two choices, moving averages, circuit breaker
- `light`: `LightClient`, routing and failover over `complete`; `open_light_client`, `ask_model`
- `openai_api`: OpenAI request parsing, answer shaping and the answer loop with its error statuses (the
  gateway's and the node's local API's)
- `gateway`: `serve_gateway`, `dolphin gateway`; with `gateway_config`, `gateway_metrics`, `receipts`
- `validator_peers`: `ValidatorDirectory`, the peers that speak for the current validators (nodes submit
  receipts to them), and the announcement a validator signs about itself
- `errors`: `PoolError` and its subclasses
- `tokenizers`: tokenizer files fetched from a pool and checked against the model id (exact bills)
- `audits`: organic audits: a sample of real answers handed to a validator, never through the node
- `http_guard`: who may call the gateway from a browser (Origin, Host, content type, CORS)
"""

from pool.client import AnswerPiece, Completion, complete
from pool.contact import NodeContact
from pool.errors import (
    AllAttemptsFailed,
    AnswerFailedCheck,
    InferenceFailed,
    NoNodeAvailable,
    PoolError,
    UnknownModel,
)
from pool.membership import Member, PoolView, find_member
from pool.validator_peers import ValidatorDirectory, ValidatorPeer, sign_announcement

__all__ = [
    "AllAttemptsFailed",
    "AnswerFailedCheck",
    "AnswerPiece",
    "Completion",
    "InferenceFailed",
    "Member",
    "NoNodeAvailable",
    "NodeContact",
    "PoolError",
    "PoolView",
    "UnknownModel",
    "ValidatorDirectory",
    "ValidatorPeer",
    "complete",
    "find_member",
    "sign_announcement",
]
