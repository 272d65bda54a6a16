"""The buyback keeper: the network's revenue, which Credits sends to the Buyback, becomes POD for stakers.

It runs in the validator daemon when the validator's account holds the Buyback's KEEPER_ROLE (the
deployment names the keeper). Each round (`keeper_round`, blocking):

1. buy: when the Buyback holds at least `min_amount` of the payment token and its TWAP is usable, swap
   what it holds, up to the per-call cap (`maxSwapAmount`), with a deadline `deadline_seconds` ahead. The
   contract computes the least POD it accepts from the pair's time-weighted price less its slippage bound
   (3% at deployment) and reverts below it. The keeper asks for more: the same TWAP quote less its own
   `max_slippage_bps`, so a sandwich that moves the pair within the contract's bound finds the swap
   refused rather than 3% of it to take. The POD vests into StakedPOD, so every stkPOD
   redeems for more POD (or it is burned while nobody stakes);
2. observe: when the newest price observation is a TWAP window old, record another (`observe` is allowed
   once per window), so a usable one — at least one window old, at most three — always exists.

A round that the contract refuses (no usable observation yet, the price moved past the bound) changes
nothing and is tried again next round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from chain.artifacts import ContractRevert
from chain.client import ChainClient
from chain.errors import ChainError

__all__ = ["KeeperConfig", "KeeperRound", "keeper_floor", "keeper_round", "serve_buyback_keeper"]

BPS = 10_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeeperConfig:
    interval_seconds: float = 300.0
    """Seconds between rounds."""
    deadline_seconds: int = 600
    """How long a sent swap may wait to be mined."""
    min_amount: int = 1
    """The least revenue (payment token units) worth a swap."""
    max_slippage_bps: int = 50
    """The keeper's own floor: the TWAP quote less this many basis points (the contract's bound applies
    when it is tighter)."""


@dataclass(frozen=True)
class KeeperRound:
    """What one round did."""

    observed: bool = False
    amount_in: int = 0
    pod_out: int = 0
    refused: str | None = None
    """Why the contract refused the swap, when it did."""


def keeper_floor(chain: ChainClient, amount: int, max_slippage_bps: int) -> int:
    """The least POD the keeper accepts for `amount`: the Buyback's TWAP quote (its `twapMinimumOut` with
    the contract's slippage bound taken back out) less `max_slippage_bps`."""
    contract_minimum = chain.buyback.twap_minimum_out(amount)
    bound = chain.buyback.max_slippage_bps()
    if max_slippage_bps >= bound:
        return contract_minimum
    return contract_minimum * (BPS - max_slippage_bps) // (BPS - bound)


def keeper_round(chain: ChainClient, config: KeeperConfig) -> KeeperRound:
    """One round (module docstring). Raises ChainError when the chain cannot be reached."""
    buyback = chain.deployment.address("Buyback")
    balance = chain.payment_token.balance_of(buyback)
    amount = min(balance, chain.buyback.max_swap_amount())
    bought = (0, 0)
    refused = None
    if amount >= config.min_amount:
        try:
            floor = keeper_floor(chain, amount, config.max_slippage_bps)  # reverts while the TWAP is unusable
            bought = chain.buy_back(amount, chain.chain_time() + config.deadline_seconds, min_pod_out=floor)
        except ContractRevert as exc:
            refused = exc.error or str(exc)
    observed = False
    _, newer = chain.buyback.observations()
    if chain.chain_time() - newer[1] >= chain.buyback.twap_window():
        try:
            chain.buyback_observe()
            observed = True
        except ContractRevert as exc:  # another keeper observed first
            log.info("observing the TWAP: %s", exc)
    return KeeperRound(observed, bought[0], bought[1], refused)


async def serve_buyback_keeper(
    chain: ChainClient, config: KeeperConfig, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Run keeper rounds every `interval_seconds` if `chain`'s account holds the keeper role (else return at
    once, logging why). Never returns otherwise."""
    try:
        keeper = await trio.to_thread.run_sync(chain.has_role, "Buyback", "KEEPER_ROLE")
    except ChainError as exc:
        log.warning("cannot tell whether this account is the buyback keeper (not keeping): %s", exc)
        keeper = False
    task_status.started(keeper)
    if not keeper:
        log.info("this account is not a buyback keeper: the buyback is someone else's job")
        return
    while True:
        try:
            done = await trio.to_thread.run_sync(keeper_round, chain, config)
        except ChainError as exc:
            log.warning("a buyback round failed (retrying next round): %s", exc)
        else:
            if done.amount_in:
                log.info("bought back %d POD wei with %d of revenue", done.pod_out, done.amount_in)
            if done.refused:
                log.info("the buyback refused a swap this round: %s", done.refused)
        await trio.sleep(config.interval_seconds)
