"""`dolphin validator audit`: check one node now, without a chain, as a validator would.

For operators testing their own node and validators investigating one: a throwaway light-client host
finds the node (DHT record, then its heartbeat on the pool topic, which gives the keys a request needs),
sends it `challenges` challenges drawn like the daemon's, and checks every answer against the reference
model, timings on this machine's clock included. Nothing is signed, published or stored.

The node's operator binding is not checked (that needs the chain): the audit is about the answers. Its
benchmark attestation is used when the node republishes one during the audit (nodes do so hourly).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from p2p import DolphinHost, HostConfig, P2PError, open_host
from p2p.validators import signed_message_validator
from pool import NodeContact
from pool.attestations import attestation_validator
from protocols import envelope
from protocols.ids import attestation_topic, pool_topic
from protocols.keys import peer_id_to_text
from protocols.messages import PoolHeartbeat
from validator.challenges import draw_challenge
from validator.checks import CHECKS, Thresholds, Verdict, check_answer
from validator.errors import ReferenceModelError, ValidatorError
from validator.reference import Reference
from validator.sampler import ChallengeFailed, ChallengeSender

__all__ = ["AuditReport", "audit_node"]


@dataclass
class AuditReport:
    """What `audit_node` found; `to_json()` is the command's one JSON object."""

    peer: str
    model: str
    challenges: int = 0
    failed: int = 0
    unanswered: int = 0
    unchecked: int = 0  # answers the reference could not check (not held against the node)
    checks: dict[str, dict[str, int]] = field(
        default_factory=lambda: {name: {"passed": 0, "failed": 0, "skipped": 0} for name in CHECKS}
    )
    failures: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "fail" if self.failed or self.unanswered else "pass"

    def add(self, verdict: Verdict | None, problem: str | None = None) -> None:
        """Count one challenge: its verdict, or None with what went wrong (unanswered)."""
        self.challenges += 1
        if verdict is None:
            self.unanswered += 1
            self.failures.append(problem or "unanswered")
            return
        for result in verdict.results:
            outcome = "skipped" if result.passed is None else "passed" if result.passed else "failed"
            self.checks[result.name][outcome] += 1
        if verdict.failed:
            self.failed += 1
            self.failures.append(verdict.summary())

    def to_json(self) -> dict:
        return {
            "peer": self.peer,
            "model": self.model,
            "challenges": self.challenges,
            "failed": self.failed,
            "unanswered": self.unanswered,
            "unchecked": self.unchecked,
            "verdict": self.verdict,
            "checks": self.checks,
            "failures": self.failures,
        }


class _Target:
    """The audited node's heartbeat and attestation, from the pool and attestation topics."""

    def __init__(self, model: bytes, peer_id: str) -> None:
        self.model = model
        self.peer_id = peer_id
        self.contact: NodeContact | None = None
        self.attestations: dict[bytes, bytes] = {}  # signer -> its latest attestation
        self.found = trio.Event()
        self.validate_heartbeat = signed_message_validator(
            PoolHeartbeat, authorise=self._is_target, on_accept=self._record
        )
        self.validate_attestation = attestation_validator(model, lambda key: False)

    def _is_target(self, signed: envelope.Signed[PoolHeartbeat]) -> bool:
        heartbeat = signed.message
        return heartbeat.model == self.model and peer_id_to_text(heartbeat.peer_id) == self.peer_id

    def _record(self, signed: envelope.Signed[PoolHeartbeat]) -> None:
        heartbeat = signed.message
        self.contact = NodeContact(self.peer_id, signed.signer, heartbeat.encryption_key, heartbeat.model)
        self.found.set()


async def _find(host: DolphinHost, target: _Target, timeout: float) -> NodeContact:
    try:
        with trio.fail_after(timeout):
            while not target.found.is_set():
                with contextlib.suppress(P2PError):  # the DHT or the dial is not ready yet: next round
                    for record in await host.dht.get_records(target.model):
                        if record.peer_id == target.peer_id and target.peer_id not in host.connected_peers():
                            await host.connect(record.addrs[0])
                with trio.move_on_after(2):
                    await target.found.wait()
    except trio.TooSlowError:
        raise ValidatorError(
            f"node {target.peer_id} was not found serving this model within {timeout:g} s: check the peer "
            "id, the bootstrap address, and that the node serves the reference model"
        ) from None
    assert target.contact is not None
    return target.contact


async def audit_node(
    reference: Reference,
    thresholds: Thresholds,
    *,
    bootstrap: tuple[str, ...],
    peer_id: str,
    data_dir: Path,
    challenges: int = 8,
    find_timeout: float = 60.0,
    challenge_timeout: float = 120.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Audit `peer_id` (see the module docstring); `on_progress(done, total)` after each challenge."""
    report = AuditReport(peer=peer_id, model=reference.model_id.hex())
    target = _Target(reference.model_id, peer_id)
    rng = random.SystemRandom()
    sender = ChallengeSender(data_dir, bootstrap, per_host=challenges, timeout=challenge_timeout)
    config = HostConfig.light_client(data_dir / "audit", bootstrap=bootstrap, listen=())
    async with open_host(config) as host, trio.open_nursery() as nursery:
        await host.gossip.subscribe(pool_topic(reference.model_id), target.validate_heartbeat)
        attestations = await host.gossip.subscribe(
            attestation_topic(reference.model_id), target.validate_attestation
        )

        async def keep_attestations() -> None:
            async for message in attestations:
                signer = envelope.open_signed(message.data, check_time=False).signer
                target.attestations[signer] = message.data

        nursery.start_soon(keep_attestations)
        contact = await _find(host, target, find_timeout)
        await nursery.start(sender.serve)
        for done in range(challenges):
            drawn = draw_challenge(rng)
            attestation = target.attestations.get(contact.node_key)
            try:
                answer = await sender.challenge(contact, drawn, attestation=attestation)
                report.add(await check_answer(reference, answer, thresholds, own_clock=True))
            except ChallengeFailed as exc:
                report.add(None, str(exc))
            except ReferenceModelError as exc:
                report.unchecked += 1
                report.failures.append(f"not checked: {exc}")
            if on_progress is not None:
                on_progress(done + 1, challenges)
        nursery.cancel_scope.cancel()
    return report
