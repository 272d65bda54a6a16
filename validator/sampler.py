"""Sending challenges over the network, as any client would (`pool.client.complete`).

`ChallengeSender` sends each challenge with a fresh session key, from a throwaway light-client host (a
DHT client with an ephemeral peer id, `HostConfig.light_client`) replaced every `per_host` challenges, so
nodes see many short-lived clients rather than one validator. It finds a node's addresses in the DHT like
any client (relay circuits included, for nodes behind NAT), and pays with a credit authorisation of the
validator's wallet when it has one and a chain (`CreditSigner`). A node that cannot be reached, refuses,
or breaks off raises `ChallengeFailed`.

"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2p import DolphinHost, HostConfig, P2PError, open_host
from pool import InferenceFailed, NodeContact, complete
from protocols.eth import EthAccount, TypedDomain
from protocols.keys import Identity
from protocols.messages import CreditAuthorisation, eth_sign
from validator.answers import Answer, answer_from_exchange
from validator.challenges import Challenge
from validator.errors import EvidenceError, ValidatorError

__all__ = ["ChallengeFailed", "ChallengeSender", "CreditSigner"]

log = logging.getLogger(__name__)


class ChallengeFailed(ValidatorError):
    """The node did not answer a challenge (unreachable, refused, broke off, or no receipt)."""


@dataclass(frozen=True)
class CreditSigner:
    """Authorises each challenge's session key to spend `max_credits` of the wallet's credit."""

    wallet: EthAccount
    domain: TypedDomain  # the Credits contract's
    max_credits: int
    lifetime_s: int = 600

    def authorise(self, session: Identity, model: bytes) -> CreditAuthorisation:
        return eth_sign(
            CreditAuthorisation,
            self.wallet,
            self.domain,
            client=self.wallet.address,
            session_key=session.public_key,
            model=model,
            max_credits=self.max_credits,
            nonce=int.from_bytes(os.urandom(16), "big"),
            expiry=int(time.time()) + self.lifetime_s,
        )


@dataclass
class _Lease:
    """A challenge host in use: retired after its quota, closed once its last challenge ends."""

    host: DolphinHost
    remaining: int
    users: int = 0
    done: trio.Event = field(default_factory=trio.Event)

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
        credit: CreditSigner | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.bootstrap = bootstrap
        self.per_host = per_host
        self.timeout = timeout
        self.credit = credit
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
            lease = _Lease(host, self.per_host)
            task_status.started(lease)
            await lease.done.wait()

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[DolphinHost]:
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
            yield lease.host
        finally:
            lease.release()

    async def challenge(
        self, contact: NodeContact, challenge: Challenge, *, attestation: bytes | None
    ) -> Answer:
        """Send `challenge` to the node; its checked-together answer (raises ChallengeFailed)."""
        session = Identity.generate()
        credit = self.credit.authorise(session, contact.model) if self.credit is not None else None
        try:
            async with self._lease() as host:
                with trio.fail_after(self.timeout):
                    if contact.peer_id not in host.connected_peers():
                        with contextlib.suppress(P2PError):  # the dial below says what went wrong
                            await host.dht.get_records(contact.model)
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
