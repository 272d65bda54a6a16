"""The chain's half of an epoch close: what the reward engine needs to know, read at one block.

For the block B that closes an epoch, every settler reads the same values, so they all compute the same
root (docs/rewards.md, "Closing epoch t"):

- `active_bond` S: Bonding.activeBondAt(account, timestamp(B)) (a checkpoint lookup, so it ignores what
  happened after B), valued in POD wei through StakedPOD.convertToAssets at B — the engine counts POD,
  the bond is held in stkPOD shares; pending unbonds are not active and do not count;
- `registered`: the account has at least one node bound to it at B (NodeRegistered minus
  NodeUnregistered events up to B);
- `suspended`: the account was slashed (Slashing.StrikeExecuted) in the epoch's blocks, or is in the
  settler's own ban list (bans decided off chain by validators' strike reports);
- the parameters: ParamsRegistry.getAll() at B, WAD fixed point turned into the engine's exact strings.

Base rewards come from receipts (off chain) and the carried state and snapshot from the previous close;
`read_epoch` joins them with the chain's values into the engine's input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from chain.address import checked_address
from chain.client import ChainClient
from chain.errors import ChainError
from chain.rewards import AccountClose, AccountEpoch, EpochInput, RewardParams, decode_document
from chain.rewards.params import AMOUNT_PARAMS
from chain.transactions import read

WAD = 10**18
# ParamsRegistry stores these two as 18-decimal fixed point; the engine takes a decimal and a rational.
_WAD_DECIMAL = "alpha"
_WAD_RATIONAL = "tiers_kappa"


class SnapshotError(ChainError):
    """The chain cannot give a snapshot at the requested block (not mined yet, or too recent)."""


@dataclass(frozen=True)
class ChainSnapshot:
    """What the chain says about each account at block `block` (timestamp `timepoint`)."""

    block: int
    timepoint: int
    params: RewardParams
    active_bonds: Mapping[str, int]
    """POD wei of active bond per account."""
    registered: frozenset[str]
    slashed: frozenset[str]
    """Accounts slashed in the epoch's blocks."""
    node_operators: Mapping[bytes, str] = field(default_factory=dict)
    """keccak256(binary peer id) -> the operator the node is registered to at `block`."""


def params_from_registry(names: Iterable[str], values: Iterable[int]) -> RewardParams:
    """The engine's parameters from ParamsRegistry.getAll()'s names and uint values, converted exactly."""
    overrides: dict[str, object] = {}
    for name, value in zip(names, values, strict=True):
        if name == _WAD_DECIMAL:
            overrides[name] = format(Decimal(value).scaleb(-18).normalize(), "f")
        elif name == _WAD_RATIONAL:
            kappa = Fraction(value, WAD)
            overrides[name] = (
                f"{kappa.numerator}/{kappa.denominator}" if kappa.denominator != 1 else str(kappa)
            )
        elif name in AMOUNT_PARAMS:
            overrides[name] = str(value)
        else:
            overrides[name] = value
    return RewardParams.from_overrides(overrides)


CALLS_PER_BATCH = 100
"""View calls per JSON-RPC batch in `call_many` (providers cap batches; 100 is within the usual caps)."""


def call_many(
    client: ChainClient, contract: str, function: str, arguments: Sequence[tuple], block: int | str = "latest"
) -> list[Any]:
    """`client.call(contract, function, *args, block=block)` for each of `arguments`, in order, sent as
    JSON-RPC batches of CALLS_PER_BATCH eth_calls: one HTTP round trip per batch instead of three per call
    (web3 checks the chain id twice before each eth_call). For functions that return plain ABI values
    (one value comes back as itself, several as a tuple). Raises ChainError when a call reverts or the
    node refuses the batch; connection failures are retried as `client.call` retries them."""
    bound = client.contracts[contract]
    abi = bound.get_function_by_name(function).abi
    inputs = [argument["type"] for argument in abi["inputs"]]
    outputs = [output["type"] for output in abi["outputs"]]
    if any(kind.startswith("tuple") for kind in inputs + outputs):
        raise ValueError(f"{contract}.{function} takes or returns a struct: call it with ChainClient.call")
    # Encoded with eth_abi directly, as read_credits does: web3's argument formatting costs more than a call.
    selector = "0x" + keccak(text=f"{function}({','.join(inputs)})")[:4].hex()
    at = hex(block) if isinstance(block, int) else block
    values: list[Any] = []
    for start in range(0, len(arguments), CALLS_PER_BATCH):
        requests = [
            ("eth_call", [{"to": bound.address, "data": selector + abi_encode(inputs, args).hex()}, at])
            for args in arguments[start : start + CALLS_PER_BATCH]
        ]
        answers = read(
            functools.partial(client.w3.provider.make_batch_request, requests),
            f"{contract}.{function} (batched)",
            rpc_url=client.rpc_url,
        )
        if not isinstance(answers, list) or len(answers) != len(requests):
            raise ChainError(f"{contract}.{function}: the node refused a batch of calls: {answers}")
        for answer in answers:
            if "error" in answer or "result" not in answer:
                raise ChainError(f"{contract}.{function} failed in a batch: {answer.get('error')}")
            decoded = abi_decode(outputs, bytes.fromhex(answer["result"].removeprefix("0x")))
            values.append(decoded[0] if len(decoded) == 1 else decoded)
    return values


def read_params(client: ChainClient, block: int | str = "latest") -> RewardParams:
    """The reward engine's parameters as governance set them in the ParamsRegistry at `block`."""
    names, values = client.call("ParamsRegistry", "getAll", block=block)
    return params_from_registry(names, values)


def read_snapshot(
    client: ChainClient,
    block: int,
    *,
    accounts: Iterable[str] = (),
    epoch_start_block: int | None = None,
) -> ChainSnapshot:
    """Read the chain's inputs of an epoch that closes at `block`.

    The accounts covered are `accounts` plus every account that ever bonded or registered a node up to
    `block`. Slashes count from `epoch_start_block` (default: the deployment's first block). Raises
    SnapshotError when `block` is not strictly older than the latest block (a checkpoint lookup must be
    in the past: mine one more block first).
    """

    latest = read(lambda: client.w3.eth.get_block("latest"), "reading the latest block")
    if block >= latest["number"]:
        raise SnapshotError(
            f"block {block} is not in the past (latest is {latest['number']}): snapshot an older block, "
            "or wait for the next one"
        )
    timepoint = read(lambda: client.w3.eth.get_block(block)["timestamp"], f"reading block {block}")
    if timepoint >= latest["timestamp"]:
        raise SnapshotError(
            f"block {block} shares its timestamp with the latest block: wait for the next one"
        )

    covered = {checked_address(a) for a in accounts}
    covered |= {log["args"]["account"] for log in client.events("Bonding", "Bonded", to_block=block)}
    registrations = _registrations(client, block)  # read once: the close needs both views of them
    nodes: dict[str, int] = {}
    for step, args in registrations:
        nodes[args["operator"]] = nodes.get(args["operator"], 0) + step
    covered |= set(nodes)

    slashed = set()
    start = epoch_start_block if epoch_start_block is not None else client.deployment.first_block
    for log in client.events("Slashing", "StrikeExecuted", to_block=block):
        if log["blockNumber"] >= start:
            slashed.add(log["args"]["offender"])

    accounts = sorted(covered)
    shares = call_many(client, "Bonding", "activeBondAt", [(account, timepoint) for account in accounts])
    bonded = sorted({s for s in shares if s})
    values = call_many(client, "StakedPOD", "convertToAssets", [(s,) for s in bonded], block)
    assets = dict(zip(bonded, values, strict=True))
    bonds = {account: assets[s] if s else 0 for account, s in zip(accounts, shares, strict=True)}
    return ChainSnapshot(
        block=block,
        timepoint=timepoint,
        params=read_params(client, block),
        active_bonds=bonds,
        registered=frozenset(a for a, count in nodes.items() if count > 0),
        node_operators=_operators_of(registrations),
        slashed=frozenset(slashed),
    )


def epoch_inputs(
    snapshot: ChainSnapshot,
    base_rewards: Mapping[str, int],
    *,
    previous: Mapping[str, AccountClose | AccountEpoch] | None = None,
    banned: Iterable[str] = (),
) -> dict[str, AccountEpoch]:
    """The engine's input for every account of `snapshot` or `base_rewards` (chain.rewards.close_epoch).

    `previous` carries each account's state and snapshot from the last close (an AccountClose, or the
    AccountEpoch that `previous_from_output` reads from its output document; absent: a new account);
    `banned` are accounts the validators suspended off chain.
    """

    rewards = {checked_address(a): r for a, r in base_rewards.items()}
    carried = {checked_address(a): c for a, c in (previous or {}).items()}
    suspended = snapshot.slashed | {checked_address(a) for a in banned}
    accounts = sorted(set(snapshot.active_bonds) | set(rewards) | set(carried))
    inputs = {}
    for account in accounts:
        observed = EpochInput(
            base_reward=rewards.get(account, 0),
            registered=account in snapshot.registered,
            suspended=account in suspended,
            active_bond=snapshot.active_bonds.get(account, 0),
        )
        last = carried.get(account)
        inputs[account] = (
            AccountEpoch(observed) if last is None else AccountEpoch(observed, last.state, last.snapshot)
        )
    return inputs


def previous_from_output(text: str | bytes) -> dict[str, AccountEpoch]:
    """The carried state and snapshot of each account in a `dolphin rewards close-epoch` output document.

    The output's per-account `state` and `snapshot` are exactly the input format's, so they are decoded
    by the exchange format's own strict reader (with a zero input standing in for the next epoch's).
    """
    import json

    try:
        accounts = json.loads(text)["accounts"]
        carried = {
            account: {"state": entry["state"], "snapshot": entry["snapshot"], "input": _ZERO_INPUT}
            for account, entry in accounts.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"not a close-epoch output document ({exc!r})") from exc
    _, decoded = decode_document(json.dumps({"params": {}, "accounts": carried}))
    return decoded


_ZERO_INPUT = {"base_reward": "0", "registered": False, "suspended": False, "active_bond": "0"}


# ---------------------------------------------------------------------------------------------- settlement
# What settling an epoch reads beside the engine's snapshot: where the epoch closes on chain, who runs which
# node, what models cost, what clients can pay, and what POD is worth in the payment token. All of it is
# read at one block, so every settler reads the same values.

Q112 = 2**112


def closing_block(client: ChainClient, end_time: int) -> int | None:
    """The block that closes an epoch ending at Unix time `end_time`: the first block whose timestamp is at
    or after it, once a later block exists (so that it is strictly in the past, as `read_snapshot` needs);
    None until then. Block timestamps never decrease, so a binary search finds it."""

    def timestamp(number: int) -> int:
        return read(lambda: client.w3.eth.get_block(number)["timestamp"], f"reading block {number}")

    latest = read(lambda: client.w3.eth.block_number, "reading the block number")
    low, high = client.deployment.first_block, latest
    if timestamp(high) < end_time:
        return None
    while low < high:
        middle = (low + high) // 2
        if timestamp(middle) >= end_time:
            high = middle
        else:
            low = middle + 1
    return low if low < latest else None


def read_node_operators(client: ChainClient, block: int | str) -> dict[bytes, str]:
    """keccak256(binary peer id) -> the operator it is registered to at `block` (from Bonding's events)."""
    return _operators_of(_registrations(client, block))


def _registrations(client: ChainClient, block: int | str) -> list[tuple[int, Any]]:
    """Bonding's NodeRegistered (step 1) and NodeUnregistered (step -1) events up to `block`, in chain
    order, as (step, args)."""
    logs = [
        (log["blockNumber"], log["logIndex"], step, log["args"])
        for event, step in (("NodeRegistered", 1), ("NodeUnregistered", -1))
        for log in client.events("Bonding", event, to_block=block)
    ]
    return [(step, args) for _, _, step, args in sorted(logs, key=lambda item: (item[0], item[1]))]


def _operators_of(registrations: Iterable[tuple[int, Any]]) -> dict[bytes, str]:
    operators: dict[bytes, str] = {}
    for step, args in registrations:
        peer = bytes(args["peerIdHash"])
        if step > 0:
            operators[peer] = args["operator"]
        elif operators.get(peer) == args["operator"]:
            del operators[peer]
    return operators


def read_prices(client: ChainClient, block: int, models: Iterable[bytes]) -> dict[bytes, int]:
    """Model -> Credits.priceOf(model) at `block`: the payment token's smallest units per million tokens."""
    return {model: client.call("Credits", "priceOf", model, block=block) for model in sorted(set(models))}


CREDIT_READ_BATCH = 1000
"""Wallets per `Credits.creditsOf` call: one eth_call reads a thousand wallets' credit."""


_CREDITS_OF = keccak(text="creditsOf(address[])")[:4]


def read_credits(
    client: ChainClient, block: int | str, wallets: Iterable[bytes]
) -> dict[bytes, tuple[int, int, int]]:
    """Wallet -> (credit, pending withdrawal request, when it was requested) at `block`, read with one
    Credits.creditsOf call per CREDIT_READ_BATCH wallets. The call is encoded with eth_abi directly: web3's
    argument formatting of a thousand addresses costs more than the call itself."""
    ordered = sorted(set(wallets))
    credits_address = client.deployment.address("Credits")
    found: dict[bytes, tuple[int, int, int]] = {}
    for start in range(0, len(ordered), CREDIT_READ_BATCH):
        chunk = ordered[start : start + CREDIT_READ_BATCH]
        data = _CREDITS_OF + abi_encode(["address[]"], [chunk])
        raw = read(
            functools.partial(client.w3.eth.call, {"to": credits_address, "data": data}, block),
            "reading credit balances",
        )
        credits, withdrawing, requested_at = abi_decode(["uint256[]", "uint256[]", "uint256[]"], bytes(raw))
        found.update(zip(chunk, zip(credits, withdrawing, requested_at, strict=True), strict=True))
    return found


def read_available_credit(
    client: ChainClient,
    block: int,
    wallets: Iterable[bytes],
    pending: Mapping[bytes, int],
    epoch_start: int,
) -> dict[bytes, int]:
    """Wallet -> what an epoch that began at time `epoch_start` and closes at `block` may debit: its credit
    then, less `pending` (debits of earlier epochs not settled at `block`), less its pending withdrawal
    request if that was made before the epoch began (nodes stopped counting it as spendable then, see
    Credits.spendableOf), never below zero. A request made during the epoch does not shield the answers
    already given: that credit stays debitable while the request waits."""
    available = {}
    for wallet, (credit, withdrawing, requested_at) in read_credits(client, block, wallets).items():
        shielded = withdrawing if 0 < requested_at < epoch_start else 0
        available[wallet] = max(0, credit - shielded - pending.get(wallet, 0))
    return available


def read_settled_batches(client: ChainClient, block: int, batch_ids: Iterable[int]) -> set[int]:
    """The debit batches among `batch_ids` that Credits had settled at `block`."""
    batches = sorted(set(batch_ids))
    settled = call_many(client, "Credits", "isSettled", [(batch,) for batch in batches], block)
    return {batch for batch, done in zip(batches, settled, strict=True) if done}


def _pair_cumulative(client: ChainClient, block: int) -> tuple[int, int, Fraction]:
    """(cumulative price of the payment token in POD as UQ112x112 seconds, block time, spot price) at
    `block`, brought up to the block's time the way the Buyback contract does."""
    pair = client.contracts["UniswapV2Pair"]
    payment = client.deployment.address("PaymentToken")
    token0 = read(lambda: pair.functions.token0().call(block_identifier=block), "reading the pair")
    reserve0, reserve1, updated = read(
        lambda: pair.functions.getReserves().call(block_identifier=block), "reading the pair's reserves"
    )
    if reserve0 == 0 or reserve1 == 0:
        raise SnapshotError("the payment/POD pair has no liquidity: POD has no price to value revenue at")
    payment_first = token0 == payment
    functions = pair.functions
    accumulator = functions.price0CumulativeLast if payment_first else functions.price1CumulativeLast
    cumulative = read(lambda: accumulator().call(block_identifier=block), "reading the pair's prices")
    now = read(lambda: client.w3.eth.get_block(block)["timestamp"], f"reading block {block}")
    pod_reserve, payment_reserve = (reserve1, reserve0) if payment_first else (reserve0, reserve1)
    elapsed = (now - updated) % 2**32
    cumulative = (cumulative + pod_reserve * Q112 // payment_reserve * elapsed) % 2**256
    return cumulative, now, Fraction(pod_reserve, payment_reserve)


def read_pod_price(client: ChainClient, block: int, since_block: int | None = None) -> Fraction:
    """POD wei per smallest unit of the payment token: the pair's time-weighted average price between
    `since_block` and `block` (the previous and this epoch's closing blocks). Without an earlier closing
    block, or no time between the two, the average runs from the Buyback's TWAP anchor instead (the
    keeper's, `twap_anchor`). Never the spot price: a swap in `block` itself moves no accumulator up to
    `block`'s time, so it cannot move the valuation."""
    cumulative, now, _ = _pair_cumulative(client, block)
    if since_block is not None:
        before, then, _ = _pair_cumulative(client, since_block)
        if then < now:
            return Fraction((cumulative - before) % 2**256 // (now - then), Q112)
    before, then = twap_anchor(client, block, now)
    return Fraction((cumulative - before) % 2**256 // (now - then), Q112)


def twap_anchor(client: ChainClient, block: int, now: int) -> tuple[int, int]:
    """(cumulative price, time) of the Buyback observation a valuation at `block` (time `now`) averages
    from: the newest one at least `twapWindow` old, as the keeper's swaps use (`Buyback._twapAnchor`, but
    an old one is not refused: a longer average is only harder to move); while none is that old, the older
    stored one, else the newer one (the deployment records the first, so one always exists). SnapshotError
    when the only observation is from `block`'s own second, which leaves no time to average over."""
    older, newer = client.call("Buyback", "observations", block=block)
    window = client.call("Buyback", "twapWindow", block=block)
    anchor = newer if now - newer[1] >= window or older[1] == 0 else older
    if anchor[1] >= now:
        raise SnapshotError(f"no Buyback price observation before block {block}: POD has no average price")
    return anchor[0], anchor[1]
