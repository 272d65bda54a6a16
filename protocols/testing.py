"""Test doubles that ship beside the code: deterministic keys, and a client/node exchange pair in memory.

    client, node = exchange_pair()                  # a checked request, both ends ready
    frames = [node.header(), node.chunk("hi", (1,)), node.end("stop", ...)]
    receipt = countersigned_receipt(wallet=eth_account(5), tokens_out=3)   # a whole paid answer's receipt

Numbers pick the key: `identity(1)` is the same key in every run and every test, and differs from
`identity(2)`. Never use these keys outside tests.
"""

from __future__ import annotations

import hashlib
from typing import Any

from protocols.eth import EthAccount, TypedDomain
from protocols.inference import ClientExchange, NodeExchange
from protocols.keys import EncryptionKeyPair, Identity
from protocols.messages import ChatMessage, CreditAuthorisation, InferenceRequest, eth_sign

__all__ = [
    "TEST_DOMAIN",
    "TEST_MODEL",
    "authorisation",
    "countersigned_receipt",
    "encryption_keys",
    "eth_account",
    "exchange_pair",
    "identity",
    "make_request",
]

TEST_MODEL = hashlib.sha256(b"dolphin-test-model").digest()
TEST_DOMAIN = TypedDomain(
    "Dolphin Network", "1", 31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
)


def _seed(kind: str, n: int) -> bytes:
    return hashlib.sha256(f"dolphin-test-key:{kind}:{n}".encode()).digest()


def identity(n: int) -> Identity:
    """A deterministic Ed25519 identity."""
    return Identity(_seed("ed25519", n))


def encryption_keys(n: int) -> EncryptionKeyPair:
    """A deterministic X25519 key pair."""
    return EncryptionKeyPair(_seed("x25519", n))


def eth_account(n: int) -> EthAccount:
    """A deterministic Ethereum account."""
    return EthAccount(_seed("secp256k1", n))


def make_request(
    node: Identity, *, prompt: str = "Hello, dolphin.", request_id: bytes | None = None, **fields: Any
) -> InferenceRequest:
    """A small valid request addressed to `node`."""
    values: dict[str, Any] = {
        "request_id": request_id or hashlib.sha256(prompt.encode()).digest()[:16],
        "model": TEST_MODEL,
        "node_key": node.public_key,
        "messages": (ChatMessage(role="user", content=prompt),),
        "max_tokens": 64,
    }
    values.update(fields)
    return InferenceRequest(**values)


def exchange_pair(
    *,
    client_n: int = 1,
    node_n: int = 2,
    now_ms: int = 1_700_000_000_000,
    prompt: str = "Hello, dolphin.",
    **request_fields: Any,
) -> tuple[ClientExchange, NodeExchange]:
    """A client exchange and the node exchange that accepted its sealed request."""
    client_id, node_id, node_keys = identity(client_n), identity(node_n), encryption_keys(node_n)
    request = make_request(node_id, prompt=prompt, **request_fields)
    client = ClientExchange(
        request, identity=client_id, node_encryption_key=node_keys.public_key, now_ms=now_ms
    )
    node = NodeExchange.accept(
        client.sealed_request, identity=node_id, encryption_keys=node_keys, now_ms=now_ms
    )
    return client, node


def authorisation(
    wallet: EthAccount,
    session_key: bytes,
    *,
    domain: TypedDomain = TEST_DOMAIN,
    model: bytes = TEST_MODEL,
    max_credits: int = 10**12,
    nonce: int = 1,
    expiry: int = 2**40,
) -> CreditAuthorisation:
    """`wallet`'s authorisation of `session_key` to spend up to `max_credits` on `model`."""
    return eth_sign(
        CreditAuthorisation,
        wallet,
        domain,
        client=wallet.address,
        session_key=session_key,
        model=model,
        max_credits=max_credits,
        nonce=nonce,
        expiry=expiry,
    )


def countersigned_receipt(
    *,
    node_n: int = 2,
    client_n: int = 1,
    wallet: EthAccount | None = None,
    credit: CreditAuthorisation | None = None,
    tokens_in: int = 5,
    tokens_out: int = 2,
    started_at_ms: int = 1_700_000_000_000,
    prompt: str = "Hello, dolphin.",
    domain: TypedDomain = TEST_DOMAIN,
    node_checks_credit: bool = True,
    **request_fields: Any,
) -> bytes:
    """A countersigned receipt of one answer of `tokens_out` tokens, started at `started_at_ms` (the node's
    clock). Paid by `credit`, or by a fresh authorisation of `wallet`, or by nobody. With
    `node_checks_credit=False` the node names the authorisation's wallet as payer without checking it
    (a careless or dishonest node)."""
    client_id = identity(client_n)
    if credit is None and wallet is not None:
        model = request_fields.get("model", TEST_MODEL)
        credit = authorisation(wallet, client_id.public_key, domain=domain, model=model)
    node_id, node_keys = identity(node_n), encryption_keys(node_n)
    request = make_request(node_id, prompt=prompt, credit=credit, **request_fields)
    client = ClientExchange(
        request, identity=client_id, node_encryption_key=node_keys.public_key, now_ms=started_at_ms
    )
    node = NodeExchange.accept(
        client.sealed_request,
        identity=node_id,
        encryption_keys=node_keys,
        now_ms=started_at_ms,
        credit_domain=domain if credit is not None and node_checks_credit else None,
    )
    if credit is not None and not node_checks_credit:
        node.credit_client = credit.client
    end_at = started_at_ms + 10
    client.receive(node.header(), now_ms=started_at_ms)
    if tokens_out:
        client.receive(node.chunk("x" * tokens_out, tuple(range(tokens_out))), now_ms=started_at_ms + 1)
    client.receive(
        node.end(
            "stop",
            tokens_in=tokens_in,
            started_at_ms=started_at_ms,
            first_token_ms=1 if tokens_out else 0,
            duration_ms=10,
            now_ms=started_at_ms,
        ),
        now_ms=end_at,
    )
    return client.countersigned_receipt()
