"""Talking to an RPC node safely: connecting, retried reads, and transactions sent exactly once.

Reads (calls, balances, receipts) are idempotent, so a dropped connection is retried with backoff. A
signed transaction is never resent blindly: if the connection drops while it is being sent, the node may
or may not have it, so the error gives its hash to look up instead. Reverts are decoded against the
custom errors of every contract we deploy, because an error often comes from a contract the called one
calls (a quorum check inside RewardsDistributor.proposeRoot, an ERC-20 transfer inside a deposit).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, TypeVar

from chain.artifacts import Artifact, ContractRevert, decode_revert, load_artifact
from chain.errors import ChainError

T = TypeVar("T")

# Contracts whose custom errors a revert from our system may carry (including inherited OpenZeppelin ones).
SYSTEM_CONTRACTS = (
    "POD",
    "StakedPOD",
    "Bonding",
    "ValidatorQuorum",
    "Slashing",
    "Credits",
    "Buyback",
    "RewardsDistributor",
    "ParamsRegistry",
    "DolphinTimelock",
    "DolphinGovernor",
    "LocalStablecoin",
)
READ_ATTEMPTS = 4
READ_BACKOFF_S = 0.25
RPC_TIMEOUT_S = 10.0
RECEIPT_TIMEOUT_S = 60.0
GAS_HEADROOM_PERCENT = 125
GAS_HEADROOM_FIXED = 20_000


class ChainUnavailable(ChainError):
    """The RPC node cannot be reached (down, wrong URL) or stopped answering."""


class TransactionFailed(ChainError):
    """A transaction was mined but reverted without a decodable reason, or its fate is unknown."""


def connect(rpc_url: str, *, timeout: float = RPC_TIMEOUT_S):
    """A web3 connection to `rpc_url`, checked by reading the chain id (with retries).

    Raises ChainUnavailable naming the URL when nothing answers there.
    """
    from web3 import Web3

    # web3's own retries are switched off so that `read` is the one retry policy, and sends never retry.
    provider = Web3.HTTPProvider(
        rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
    )
    w3 = Web3(provider)
    read(lambda: w3.eth.chain_id, f"reading the chain id from {rpc_url}", rpc_url=rpc_url)
    return w3


def read(fetch: Callable[[], T], what: str, *, rpc_url: str = "", attempts: int = READ_ATTEMPTS) -> T:
    """`fetch()`, retried with exponential backoff while the node cannot be reached; safe for reads only.

    A revert of a call is not a connection problem and is raised at once as ContractRevert.
    """
    from web3.exceptions import ContractLogicError

    delay = READ_BACKOFF_S
    for attempt in range(1, attempts + 1):
        try:
            return fetch()
        except ContractLogicError as exc:
            raise _revert_error(exc, what) from exc
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            if attempt == attempts:
                where = f" at {rpc_url}" if rpc_url else ""
                raise ChainUnavailable(
                    f"{what}: the chain{where} does not answer ({type(exc).__name__}) after {attempts} "
                    "attempts; check that the node is running and the RPC URL is right "
                    "(`dolphin chain deploy` starts a local one)"
                ) from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def send(w3, account, call, what: str, *, value: int = 0) -> Any:
    """Sign `call` (a bound contract function) from `account` (a LocalAccount), send it once, wait.

    Gas is estimated first, so a transaction that would revert is refused before anything is signed or
    sent: ContractRevert names the contract's custom error. Returns the receipt.
    """
    tx = read(
        lambda: call.build_transaction(
            {
                "from": account.address,
                "value": value,
                "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            }
        ),
        what,
    )
    # The estimate is exact for the state it ran on; the mined block may take a costlier path (a later
    # timestamp makes Buyback's TWAP read accumulate, for one), so leave headroom instead of running out.
    tx["gas"] = tx["gas"] * GAS_HEADROOM_PERCENT // 100 + GAS_HEADROOM_FIXED
    return send_signed(w3, account.sign_transaction(tx), what)


def deploy_contract(w3, account, name: str, *args: Any, artifact: Artifact | None = None) -> Any:
    """Deploy compiled contract `name` (or `artifact`) from `account` through `send`; returns the contract.

    A constructor that would revert raises ContractRevert naming the custom error; nothing is sent.
    """
    artifact = artifact or load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = send(w3, account, factory.constructor(*args), f"deploying {name}")
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact.abi)


def send_value(w3, account, to: str, value: int, what: str) -> Any:
    """Send `value` wei of the chain's coin from `account` to `to`; returns the receipt."""
    tx = read(
        lambda: {
            "from": account.address,
            "to": to,
            "value": value,
            "gas": 21_000,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
            "gasPrice": w3.eth.gas_price,
        },
        what,
    )
    return send_signed(w3, account.sign_transaction(tx), what)


def send_signed(w3, signed, what: str) -> Any:
    """Send a signed transaction once and wait for its receipt; the wait (a read) is retried."""
    from web3.exceptions import TimeExhausted

    tx_hash = "0x" + bytes(signed.hash).hex()
    try:
        w3.eth.send_raw_transaction(signed.raw_transaction)
    except Exception as exc:
        if _is_connection_error(exc):
            raise ChainUnavailable(
                f"{what}: the connection failed while sending transaction {tx_hash}; it may or may not "
                "have reached the node. Look it up (`cast tx` or a block explorer) before trying again: "
                "it was not resent"
            ) from exc
        # The node looked at it and said no (nonce, funds, fee): nothing was mined.
        raise TransactionFailed(
            f"{what}: the node refused transaction {tx_hash}: {_node_message(exc)}"
        ) from exc
    try:
        receipt = read(
            lambda: w3.eth.wait_for_transaction_receipt(
                signed.hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=0.02
            ),
            f"{what}: waiting for transaction {tx_hash}",
        )
    except TimeExhausted as exc:
        raise TransactionFailed(
            f"{what}: transaction {tx_hash} was sent but not mined within {RECEIPT_TIMEOUT_S:.0f} s; it may "
            "still be mined. Look it up before trying again: it was not resent"
        ) from exc
    if receipt.status != 1:
        raise TransactionFailed(f"{what}: transaction {tx_hash} reverted on chain")
    return receipt


@cache
def system_error_abi() -> tuple[dict[str, Any], ...]:
    """Every custom error declared (or inherited) by the system's contracts, each signature once."""
    seen: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for name in SYSTEM_CONTRACTS:
        for item in load_artifact(name).abi:
            if item.get("type") == "error":
                key = (item["name"], tuple(i["type"] for i in item.get("inputs", [])))
                seen.setdefault(key, item)
    return tuple(seen.values())


def decode_system_revert(data: str | bytes) -> tuple[str, tuple] | None:
    """Name and arguments of the system custom error that revert data `data` encodes, if any."""
    return decode_revert(list(system_error_abi()), data)


def _revert_error(exc: Exception, what: str) -> ContractRevert:
    data = getattr(exc, "data", None)
    decoded = decode_system_revert(data) if isinstance(data, str | bytes) and data else None
    if decoded:
        name, args = decoded
        return ContractRevert(f"{what}: reverted with {name}{_format_args(args)}", name, args)
    message = getattr(exc, "message", None) or str(exc)
    return ContractRevert(f"{what}: reverted ({message})")


def _format_args(args: Iterable[Any]) -> str:
    shown = []
    for arg in args:
        shown.append("0x" + arg.hex() if isinstance(arg, bytes) else str(arg))
    return "(" + ", ".join(shown) + ")"


def _node_message(exc: Exception) -> str:
    """What an RPC error says, without web3's wrapping (Web3RPCError carries the node's JSON error)."""
    error = getattr(exc, "rpc_response", None) or {}
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        return str(error["error"].get("message", exc))
    return str(exc)


def _is_connection_error(exc: BaseException) -> bool:
    import requests
    from web3.exceptions import ProviderConnectionError, TimeExhausted

    if isinstance(exc, TimeExhausted):
        return False
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | ProviderConnectionError | ConnectionError
    )
