"""Test doubles beside the code: real countersigned receipts made in memory, for settlement tests and
benchmarks.

    receipt = countersigned_receipt(node_n=2, client_n=1, wallet=eth_account(5), tokens_out=3)

Each receipt is a genuine exchange between `protocols.testing` identities: the node signs it, the client
countersigns it, and with a `wallet` the request carries that wallet's credit authorisation, checked by the
node in `domain`. Never use these keys outside tests.
"""

from __future__ import annotations

from protocols import testing as pt
from protocols.eth import EthAccount, TypedDomain
from protocols.inference import ClientExchange, NodeExchange
from protocols.messages import CreditAuthorisation, eth_sign

__all__ = ["authorisation", "countersigned_receipt"]


def authorisation(
    wallet: EthAccount,
    session_key: bytes,
    *,
    domain: TypedDomain = pt.TEST_DOMAIN,
    model: bytes = pt.TEST_MODEL,
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
    domain: TypedDomain = pt.TEST_DOMAIN,
    node_checks_credit: bool = True,
    **request_fields: object,
) -> bytes:
    """A countersigned receipt of one answer of `tokens_out` tokens, started at `started_at_ms` (the node's
    clock). Paid by `credit`, or by a fresh authorisation of `wallet`, or by nobody. With
    `node_checks_credit=False` the node names the authorisation's wallet as payer without checking it
    (a careless or dishonest node)."""
    client_id = pt.identity(client_n)
    if credit is None and wallet is not None:
        model = request_fields.get("model", pt.TEST_MODEL)
        credit = authorisation(wallet, client_id.public_key, domain=domain, model=model)  # type: ignore[arg-type]
    node_id, node_keys = pt.identity(node_n), pt.encryption_keys(node_n)
    request = pt.make_request(node_id, prompt=prompt, credit=credit, **request_fields)
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
