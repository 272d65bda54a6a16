"""The wallets challenges pay from: many, each like one user's wallet, none the validator's own.

A node sees every request's payer and its credit cap (a light client caps at its wallet's whole credit,
`pool.light.CreditWallet`). From one challenge wallet, every challenge carried one address and one cap,
which a node learns once and matches forever after. So a validator pays from `count` wallets derived from
one seed file (`challenge.key`: wallet 0 is its key, so a wallet funded before stays in use; wallet i is
keccak256(label, seed, i)), each with its own credit, and each throwaway challenge host pays from one of
them, drawn at random among those with credit, for its whole life, as one client pays from one wallet.

Funding is where a challenge wallet is linked or not (docs/verification.md): `plan_funding` spreads a
budget over the wallets in amounts resampled from balances users' wallets hold (the validator reads them
on chain, e.g. the credit of the payers its settlement sees), at times staggered over a window and in a
random order, so neither the amounts nor their timing mark the wallets as a set. Who sends the deposits is
the operator's choice and its trade-off, stated in the docs: the Credits contract records the depositor.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from chain.client import ChainClient, read_key_file
from chain.errors import ChainError
from pool.light import CreditWallet
from protocols.eth import EthAccount, TypedDomain, keccak256, to_checksum_address
from runtime.files import write_atomically
from validator.errors import ValidatorError

__all__ = [
    "Deposit",
    "challenge_accounts",
    "challenge_seed",
    "open_challenge_wallets",
    "pick_wallet",
    "plan_funding",
    "track_challenge_credit",
]

log = logging.getLogger(__name__)

_DERIVATION_LABEL = b"dolphin challenge wallet"
# How far a planned deposit strays from the user balance it copies: no deposit equals a real user's
# balance, which would point at the wallet it was copied from.
_JITTER = 0.15


def challenge_accounts(seed: bytes, count: int) -> list[EthAccount]:
    """The `count` challenge wallets of one seed (32 bytes): wallet 0 is the seed's own key."""
    if len(seed) != 32:
        raise ValidatorError("a challenge wallet seed is 32 bytes")
    keys = [seed] + [keccak256(_DERIVATION_LABEL + seed + i.to_bytes(4, "big")) for i in range(1, count)]
    return [EthAccount(key) for key in keys]


def challenge_seed(path: Path) -> bytes:
    """The challenge wallets' seed in `path`, written (mode 0600) when missing."""
    if not path.exists():
        write_atomically(path, ("0x" + os.urandom(32).hex() + "\n").encode(), mode=0o600)
        log.info("wrote the challenge wallets' seed to %s", path)
    try:
        return bytes.fromhex(read_key_file(path).removeprefix("0x"))
    except (ChainError, ValueError) as exc:
        raise ValidatorError(f"the challenge wallet seed {path} is unusable: {exc}") from exc


def open_challenge_wallets(path: Path, count: int, domain: TypedDomain) -> list[CreditWallet]:
    """The challenge wallets of the seed in `path` (`challenge_seed`), as light-client wallets of the
    Credits `domain`, their addresses logged for funding; their credit is unknown until read
    (`track_challenge_credit`)."""
    wallets = [CreditWallet(account, domain) for account in challenge_accounts(challenge_seed(path), count)]
    log.info(
        "challenge wallets (fund each with credit, not from the validator's wallet: docs/validator.md): %s",
        " ".join("0x" + wallet.account.address.hex() for wallet in wallets),
    )
    return wallets


def pick_wallet(wallets: Sequence[CreditWallet], rng: random.Random) -> CreditWallet | None:
    """The wallet a new challenge host pays from: one with credit (or not yet read), at random; None
    without wallets. When none has credit, any: its challenges go unpaid, as any empty wallet's would."""
    if not wallets:
        return None
    funded = [wallet for wallet in wallets if wallet.available is None or wallet.available > 0]
    return rng.choice(funded or list(wallets))


@dataclass(frozen=True)
class Deposit:
    """One planned deposit: `amount` of credit into `address`, `at_s` seconds into the funding window."""

    at_s: float
    address: bytes
    amount: int


def plan_funding(
    rng: random.Random,
    addresses: Sequence[bytes],
    user_balances: Sequence[int],
    budget: int,
    window_s: float,
) -> list[Deposit]:
    """Deposits that fund `addresses` within `budget`, in time order: each wallet's amount is a user
    balance drawn at random (within ±15%), the whole scaled down when it would pass the budget, each at
    its own uniform random time in the window. Raises ValidatorError without user balances to copy."""
    balances = [b for b in user_balances if b > 0]
    if not balances:
        raise ValidatorError("no user balances to draw challenge wallets' funding from")
    amounts = [rng.choice(balances) * rng.uniform(1 - _JITTER, 1 + _JITTER) for _ in addresses]
    scale = min(1.0, budget / sum(amounts)) if amounts else 1.0
    deposits = [
        Deposit(rng.uniform(0, window_s), address, int(amount * scale))
        for address, amount in zip(addresses, amounts, strict=True)
    ]
    return sorted((d for d in deposits if d.amount > 0), key=lambda d: d.at_s)


async def track_challenge_credit(
    wallets: Sequence[CreditWallet],
    chain: ChainClient,
    interval: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep each wallet's `available` at its spendable credit (read now, then every `interval` s), the cap
    its next authorisation carries; one log line when the number of funded wallets changes."""
    funded: int | None = None
    while True:
        for wallet in wallets:
            address = to_checksum_address(wallet.account.address)
            try:
                wallet.available = await trio.to_thread.run_sync(chain.credits.spendable_of, address)
            except ChainError as exc:
                log.warning("could not read a challenge wallet's credit (keeping it): %s", exc)
        now_funded = sum(1 for wallet in wallets if wallet.available)
        if now_funded != funded:
            funded = now_funded
            log.info("%d of %d challenge wallets hold credit", funded, len(wallets))
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        await trio.sleep(interval)
