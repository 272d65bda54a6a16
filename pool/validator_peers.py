"""Which peers speak for the validators: the directory built from `ValidatorAnnouncement`s on
VALIDATORS_TOPIC, and the announcement a validator signs about itself.

Nodes submit their receipts to these peers, and validators fetch each other's receipts from them, so an
announcement must be hard to fake: its validator wallet signs (EIP-712 `ValidatorPeer`, in the
ValidatorQuorum contract's domain) the binding to the peer id, and the peer key signs the envelope. The
topic validator decides, in this order:

- REJECT: not an announcement envelope, a bad envelope or wallet signature, or an envelope signed by
  another peer than the one announced (p2p.validators does the envelope checks);
- IGNORE: an expired binding, or a wallet outside the current validator set (the set changes at epoch
  boundaries, so a stale announcement is not misbehaviour);
- ACCEPT: the peer is recorded (the newest announcement per wallet wins) until its binding expires.

`members` is the current set's addresses, refreshed by the owner (a chain read); None accepts every
correctly signed wallet (a network without a chain, in tests).

`fetch_rewards_tree` gets a settled epoch's rewards tree from any validator peer (REWARDS_TREE_PROTOCOL),
page by page, and rebuilds it: a tree whose root is not the one asked for (the chain's) is refused, so
whoever serves it needs no trust.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from chain.address import checked_address
from chain.merkle import MerkleError, RewardsTree
from p2p import DolphinHost, P2PError, PoolRecord, StreamOpener, Verdict, signed_message_validator
from pool.errors import TreeUnavailable
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.eth import EthAccount, TypedDomain
from protocols.ids import REWARDS_TREE_PROTOCOL, VALIDATORS_RECORD
from protocols.keys import Identity, peer_id_to_text
from protocols.messages import (
    RewardsTreePage,
    RewardsTreeRequest,
    ValidatorAnnouncement,
    eth_sign,
    eth_signer,
)
from protocols.schema import decode_message, encode_message

__all__ = [
    "ValidatorDirectory",
    "ValidatorPeer",
    "fetch_rewards_tree",
    "other_validators",
    "serve_validator_discovery",
    "serve_validator_set",
    "sign_announcement",
]


@dataclass(frozen=True)
class ValidatorPeer:
    """A validator wallet and the peer that speaks for it."""

    validator: bytes
    peer_id: str
    addrs: tuple[str, ...]
    expiry: int
    announced_at_ms: int


class ValidatorDirectory:
    """The peers of the current validators; `validate` is VALIDATORS_TOPIC's GossipSub validator."""

    def __init__(self, domain: TypedDomain, members: frozenset[bytes] | None = None) -> None:
        self.domain = domain
        self.members = members
        self._peers: dict[bytes, ValidatorPeer] = {}
        self.validate = signed_message_validator(
            ValidatorAnnouncement, authorise=self._authorise, on_accept=self._record
        )

    def set_members(self, members: frozenset[bytes] | None) -> None:
        """The current validator set changed (or was read for the first time)."""
        self.members = members

    def _authorise(self, signed: envelope.Signed[ValidatorAnnouncement]) -> bool | Verdict:
        announcement = signed.message
        if signed.peer_id != announcement.peer_id:
            return False
        eth_signer(announcement, self.domain)  # SignatureError: rejected
        if announcement.expiry <= time.time():
            return Verdict.IGNORE
        if self.members is not None and announcement.validator not in self.members:
            return Verdict.IGNORE
        held = self._peers.get(announcement.validator)
        if held is not None and held.announced_at_ms > signed.issued_at_ms:
            return Verdict.IGNORE  # older than what we know
        return True

    def _record(self, signed: envelope.Signed[ValidatorAnnouncement]) -> None:
        announcement = signed.message
        self._peers[announcement.validator] = ValidatorPeer(
            validator=announcement.validator,
            peer_id=peer_id_to_text(announcement.peer_id),
            addrs=announcement.addrs,
            expiry=announcement.expiry,
            announced_at_ms=signed.issued_at_ms,
        )

    def peers(self, now: float | None = None) -> list[ValidatorPeer]:
        """The current validators' peers with unexpired bindings, by validator address."""
        now = time.time() if now is None else now
        return [
            peer
            for address, peer in sorted(self._peers.items())
            if peer.expiry > now and (self.members is None or address in self.members)
        ]


def sign_announcement(
    identity: Identity,
    peer_id: bytes,
    wallet: EthAccount,
    domain: TypedDomain,
    addrs: list[str],
    *,
    expiry: int,
    ttl_ms: int = 10 * 60 * 1000,
) -> bytes:
    """The envelope a validator publishes about itself: `wallet` binds `peer_id` (whose key is `identity`)
    until `expiry` (Unix seconds); the envelope lives `ttl_ms`."""
    announcement = eth_sign(
        ValidatorAnnouncement,
        wallet,
        domain,
        validator=wallet.address,
        peer_id=peer_id,
        addrs=tuple(addrs[:8]),
        expiry=expiry,
    )
    return envelope.sign(announcement, identity, ttl_ms=ttl_ms)


class MembersHolder(Protocol):
    def set_members(self, members: frozenset[bytes] | None) -> None: ...


async def serve_validator_set(
    read_members: Callable[[], frozenset[bytes] | None],
    *holders: MembersHolder,
    interval: float = 60.0,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep the current validator set of `holders` (a directory, a signature book) up to date:
    `read_members()` (a blocking chain read, run in a thread) now and every `interval` seconds. When it
    returns None (it could not read the chain, and said why) the last set stays. Never returns."""
    started = False
    while True:
        members = await trio.to_thread.run_sync(read_members, abandon_on_cancel=True)
        if members is not None:
            for holder in holders:
                holder.set_members(members)
        if not started:
            task_status.started()
            started = True
        await trio.sleep(interval)


async def other_validators(host: DolphinHost) -> list[PoolRecord]:
    """The validators' DHT records (VALIDATORS_RECORD), this peer's own left out. Raises P2PError."""
    return [r for r in await host.dht.get_records(VALIDATORS_RECORD) if r.peer_id != host.peer_id]


async def serve_validator_discovery(
    host: DolphinHost,
    *,
    interval: float = 60.0,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Stay connected to the validators' peers: look their DHT records up (VALIDATORS_RECORD) now and every
    `interval` seconds and dial those not connected, so VALIDATORS_TOPIC and SETTLEMENT_TOPIC reach this
    peer (gossip travels only between connected subscribers). Never returns."""
    task_status.started()
    while True:
        try:
            records = await other_validators(host)
        except P2PError:
            records = []
        for record in records:
            if record.peer_id not in host.connected_peers():
                try:
                    await host.connect_any(record.peer_id, record.addrs)
                except P2PError:
                    continue
        await trio.sleep(interval)


MAX_TREE_PAGE_BYTES = 256 * 1024


async def _tree_from(host: StreamOpener, peer_id: str, epoch: int, root: bytes) -> RewardsTree:
    amounts: dict[str, int] = {}
    after: bytes | None = None
    while True:
        stream = await host.open_stream(peer_id, REWARDS_TREE_PROTOCOL)
        try:
            await stream.write_message(encode_message(RewardsTreeRequest(epoch=epoch, after=after)))
            page = decode_message(await stream.read_message(MAX_TREE_PAGE_BYTES), RewardsTreePage)
        finally:
            await stream.close()
        if page.epoch != epoch or page.root != root:
            raise ProtocolError(f"it has no tree of epoch {epoch} with root 0x{root.hex()}")
        for account, amount in zip(page.accounts, page.amounts, strict=True):
            amounts[checked_address("0x" + account.hex())] = amount
        if not page.accounts or len(amounts) >= page.total:
            break
        after = page.accounts[-1]
    tree = RewardsTree.build(amounts) if amounts else None
    if tree is None or tree.root != root:
        raise ProtocolError("the amounts it sent do not make the root")
    return tree


async def fetch_rewards_tree(
    host: DolphinHost, epoch: int, root: bytes, *, timeout: float = 60.0
) -> RewardsTree:
    """The rewards tree of `epoch` whose root is `root` (the chain's), from the first validator peer (found
    under VALIDATORS_RECORD in the DHT) that serves it. Raises TreeUnavailable after `timeout` seconds."""
    failures: list[str] = []
    with trio.move_on_after(timeout):
        while True:
            try:
                records = await host.dht.get_records(VALIDATORS_RECORD)
            except P2PError as exc:
                records = []
                failures.append(f"DHT: {exc}")
            for record in records:
                try:
                    await host.connect_any(record.peer_id, record.addrs)
                    return await _tree_from(host, record.peer_id, epoch, root)
                except (P2PError, ProtocolError, MerkleError) as exc:
                    failures.append(f"{record.peer_id}: {exc}")
            await trio.sleep(1.0)
    why = "; ".join(failures[-3:]) or "no validator peer found in the DHT"
    raise TreeUnavailable(
        f"no validator served the rewards tree of epoch {epoch} within {timeout:.0f} s ({why})"
    )
