"""What the chain says about pool members, read off the event loop and cached: who is a validator, which
operator registered which node, and whose bond is active.

Gossip validators and the router run synchronously on the event loop, so they ask this cache and never
the chain: a fact not read yet counts as "no" (not registered, not bonded, not a validator) and is queued
for the next refresh, which `serve` runs every `refresh_s` seconds, or at once when something new is asked
about, in a worker thread (web3 calls block). A chain that stops answering leaves the last facts in
place and is retried on the next round; its error is logged, never raised into the pool.

Facts:
- validators: the current set (`ValidatorQuorum.validators`), so standings and bans can be checked;
- registered: `Bonding.isNodeOf(operator, keccak256(peer id))` for the operator a node's heartbeat names;
- bonded: `Bonding.activeBondOf(operator) > 0`, the whitepaper's "bonded accounts only";
- ban rules: `Slashing.strikeRules()`, what a ban notice's strikes must add up to (`pool.bans`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from chain import areas
from chain.errors import ChainError
from pool.bans import BanRules
from protocols.eth import keccak256, to_checksum_address

__all__ = ["ChainFacts", "ChainReader"]

log = logging.getLogger(__name__)


class ChainReader(Protocol):
    """The part of `chain.client.ChainClient` this cache uses (a test may hand in its own)."""

    def call(self, contract: str, function: str, *args: Any) -> Any: ...
    @property
    def validator_quorum(self) -> areas.ValidatorQuorum: ...
    @property
    def bonding(self) -> areas.Bonding: ...
    @property
    def slashing(self) -> areas.Slashing: ...


@dataclass
class ChainFacts:
    """The cache; `serve` keeps it fresh. Addresses are 20 raw bytes, peer ids binary."""

    reader: ChainReader
    refresh_s: float = 30.0
    rounds: int = 0  # completed refreshes, for tests and logs
    _validators: frozenset[bytes] = field(default_factory=frozenset, init=False)
    _registered: dict[tuple[bytes, bytes], bool] = field(default_factory=dict, init=False)
    _bonded: dict[bytes, bool] = field(default_factory=dict, init=False)
    _ban_rules: BanRules = field(default_factory=BanRules, init=False)
    _wanted: trio.Event = field(default_factory=trio.Event, init=False)
    _refreshed: trio.Event = field(default_factory=trio.Event, init=False)
    _unread: bool = field(default=False, init=False)  # asked about, answered "no" until the next read

    # ---- synchronous questions (answers from the cache) ----
    def is_validator(self, address: bytes) -> bool:
        return address in self._validators

    def registered(self, peer_id: bytes, operator: bytes | None) -> bool:
        """Whether `operator` registered the node with this binary peer id on chain."""
        if operator is None:
            return False
        key = (operator, peer_id)
        if key not in self._registered:
            self._registered[key] = False
            self._unread = True
            self._wanted.set()
            return False
        return self._registered[key]

    def bonded(self, operator: bytes | None) -> bool:
        """Whether `operator` has an active bond."""
        if operator is None:
            return False
        if operator not in self._bonded:
            self._bonded[operator] = False
            self._unread = True
            self._wanted.set()
            return False
        return self._bonded[operator]

    def ban_rules(self) -> BanRules:
        """The chain's ban rules (its deployment values until the first read)."""
        return self._ban_rules

    # ---- keeping it fresh ----
    def _read_all(
        self,
    ) -> tuple[frozenset[bytes], dict[tuple[bytes, bytes], bool], dict[bytes, bool], BanRules]:
        members = self.reader.validator_quorum.members()
        validators = frozenset(bytes.fromhex(m[2:]) for m in members)
        registered = {
            (operator, peer_id): bool(
                self.reader.bonding.is_node_of(to_checksum_address(operator), keccak256(peer_id))
            )
            for operator, peer_id in list(self._registered)
        }
        bonded = {
            operator: self.reader.bonding.active_bond_of(to_checksum_address(operator)) > 0
            for operator in list(self._bonded)
        }
        rules = BanRules.from_chain(self.reader.slashing.strike_rules())
        return validators, registered, bonded, rules

    def ask_again(self) -> bool:
        """Forget every "no" for a node's registration or an operator's bond, so that the next question
        about it is read from the chain again; whether there was any. A node is often heard of before its
        registration is mined: without this, the "no" read then stood until the next round (`refresh_s`)
        and a client asking in between found no node at all."""
        noes = [key for key, yes in self._registered.items() if not yes]
        noes_bonded = [operator for operator, yes in self._bonded.items() if not yes]
        for key in noes:
            del self._registered[key]
        for operator in noes_bonded:
            del self._bonded[operator]
        return bool(noes or noes_bonded)

    @property
    def unread(self) -> bool:
        """Whether something was asked about that the chain has not been read for yet (its answer so far
        is a provisional "no")."""
        return self._unread

    async def refresh(self) -> None:
        """Read every fact asked about so far, now (in a worker thread)."""
        self._unread = False
        try:
            validators, registered, bonded, rules = await trio.to_thread.run_sync(self._read_all)
        except ChainError as exc:
            log.warning("could not read the chain (keeping the last facts, retrying): %s", exc)
            self._unread = True
            return
        self._validators = validators
        self._registered.update(registered)
        self._bonded.update(bonded)
        self._ban_rules = rules
        self.rounds += 1
        self._refreshed.set()
        self._refreshed = trio.Event()

    async def wait_refreshed(self) -> None:
        """Until the next refresh completes."""
        await self._refreshed.wait()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Refresh now (started once the first round is done), then every `refresh_s` seconds, or sooner
        when a new node or operator is asked about (at most once a second)."""
        await self.refresh()
        task_status.started()
        while True:
            with trio.move_on_after(self.refresh_s):
                await self._wanted.wait()
                await trio.sleep(1.0)  # gather what else is asked about in the same breath
            self._wanted = trio.Event()  # what is asked about from here on wakes the next round
            await self.refresh()
