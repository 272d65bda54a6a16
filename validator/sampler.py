"""Sending challenges over the network, as any client would (`pool.client.complete`).

`ChallengeSender` sends challenges from throwaway light-client hosts (a DHT client with an ephemeral peer
id, `HostConfig.light_client`) replaced every `per_host` challenges, and signs each with its host's own
key, as the project's clients do (`dolphin ask` signs with its one-question peer, the gateway with its
peer): a session key that differed from the stream's peer would mark the request as a validator's. It
finds a node's addresses in the DHT like any client (relay circuits included, for nodes behind NAT), and
pays exactly as a light client pays (`pool.light.CreditWallet`: a 64-bit nonce, an hour's expiry, a cap of
the wallet's whole credit), each host from one of the challenge wallets the daemon gives it, drawn at
random when the host opens (`challenge_wallets`) — never the validator's own wallet, whose address is
public (docs/verification.md says why and what it costs). A node that cannot be
reached, refuses, or breaks off raises `ChallengeFailed`.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2p import DolphinHost, HostConfig, P2PError, open_host
from pool import InferenceFailed, NodeContact, PoolView, complete
from pool.light import CreditWallet
from pool.membership import ask_for_heartbeat
from protocols.keys import Identity
from validator.answers import Answer, answer_from_exchange
from validator.challenge_wallets import pick_wallet
from validator.challenges import Challenge
from validator.errors import EvidenceError, ValidatorError

__all__ = ["ChallengeFailed", "ChallengeSender"]

log = logging.getLogger(__name__)


class ChallengeFailed(ValidatorError):
    """The node did not answer a challenge (unreachable, refused, broke off, or no receipt)."""


@dataclass
class _Lease:
    """A challenge host in use, with the wallet it pays from: retired after its quota, closed once its
    last challenge ends."""

    host: DolphinHost
    credit: CreditWallet | None
    remaining: int
    users: int = 0
    done: trio.Event = field(default_factory=trio.Event)
    heard: dict[str, trio.Event] = field(default_factory=dict)  # per node: its heartbeat was asked for

    def release(self) -> None:
        self.users -= 1
        if self.remaining <= 0 and self.users == 0:
            self.done.set()


class ChallengeSender:
    """See the module docstring. Run `serve` in a nursery (it owns the hosts), then call `challenge`."""

    def __init__(
        self,
        data_dir: Path,
        bootstrap: tuple[str, ...],
        *,
        per_host: int = 16,
        timeout: float = 120.0,
        wallets: Sequence[CreditWallet] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.bootstrap = bootstrap
        self.per_host = per_host
        self.timeout = timeout
        self.wallets = tuple(wallets)
        self._rng = rng or random.SystemRandom()
        self.hosts_opened = 0
        self._nursery: trio.Nursery | None = None
        self._current: _Lease | None = None
        self._lock = trio.Lock()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the challenge hosts until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def _run_host(self, task_status: trio.TaskStatus[_Lease]) -> None:
        config = HostConfig.light_client(self.data_dir / "challenger", bootstrap=self.bootstrap, listen=())
        async with open_host(config) as host:
            lease = _Lease(host, pick_wallet(self.wallets, self._rng), self.per_host)
            task_status.started(lease)
            await lease.done.wait()

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[_Lease]:
        if self._nursery is None:
            raise ValidatorError("ChallengeSender.serve is not running")
        async with self._lock:
            if self._current is None or self._current.remaining <= 0:
                self._current = await self._nursery.start(self._run_host)
                self.hosts_opened += 1
            lease = self._current
            lease.remaining -= 1
            lease.users += 1
        try:
            yield lease
        finally:
            lease.release()

    async def challenge(
        self, contact: NodeContact, challenge: Challenge, *, attestation: bytes | None
    ) -> Answer:
        """Send `challenge` to the node; its checked-together answer (raises ChallengeFailed)."""
        try:
            async with self._lease() as lease:
                host = lease.host
                session = Identity(host.signing_seed())
                credit = lease.credit.authorise(session.public_key, contact.model) if lease.credit else None
                with trio.fail_after(self.timeout):
                    if contact.peer_id not in host.connected_peers():
                        with contextlib.suppress(P2PError):  # the dial below says what went wrong
                            await host.dht.get_records(contact.model)
                    heard = lease.heard.get(contact.peer_id)
                    if heard is None:
                        # A user's client asks a member it has not heard yet for its heartbeat before its
                        # first request (pool.watch): a challenge host that did not would stand out.
                        heard = lease.heard[contact.peer_id] = trio.Event()
                        try:
                            hear = PoolView(contact.model, None).validate
                            await ask_for_heartbeat(host, contact.peer_id, contact.model, hear)
                        finally:
                            heard.set()
                    await heard.wait()
                    completion = await complete(
                        host,
                        contact,
                        challenge.messages,
                        identity=session,
                        max_tokens=challenge.max_tokens,
                        temperature=challenge.temperature,
                        top_p=challenge.top_p,
                        seed=challenge.seed,
                        stop=challenge.stop,
                        timeout=self.timeout,
                        credit=credit,
                    )
        except (InferenceFailed, P2PError, trio.TooSlowError) as exc:
            raise ChallengeFailed(f"node {contact.peer_id} did not answer: {exc}") from exc
        if completion.exchange is None:
            raise ChallengeFailed(f"node {contact.peer_id} did not answer")
        try:
            return answer_from_exchange(completion.exchange, attestation=attestation)
        except EvidenceError as exc:
            raise ChallengeFailed(f"node {contact.peer_id} sent no usable receipt: {exc}") from exc
