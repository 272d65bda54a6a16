"""Test helpers shipped beside the validator: a node's answer made in process, without a network.

`LocalBus` stands in for GossipSub between validators in one process: what one publishes goes through
each other member's real topic validator (`Validator.topic_validators`) and, when accepted, to its
`deliver`; every publication is kept in `published` for tests to look at.

`answer_in_process(engine, challenge)` runs the real exchange state machines of both ends
(`protocols.inference`): the challenge is sealed as an InferenceRequest, opened by a NodeExchange, answered
by `engine` piece by piece as the node's inference service does, ended with a signed receipt, and received
by the ClientExchange; the result is the same verified `Answer` a validator gets from a node over libp2p,
evidence included. Tests and benchmarks use it to check engines (honest ones and cheats) by the thousand.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import TYPE_CHECKING

from node.engines.base import Engine, GenerationRequest, Priority, chat_turns
from node.inference import logprob_micro
from p2p import GossipMessage, Verdict
from protocols import envelope
from protocols.inference import ClientExchange, NodeExchange
from protocols.keys import EncryptionKeyPair, Identity, peer_id_to_text
from protocols.messages import BenchmarkAttestation, ChatMessage, HardwareSummary, InferenceRequest
from validator.answers import Answer, answer_from_exchange
from validator.challenges import Challenge

if TYPE_CHECKING:
    from validator.service import Validator

__all__ = ["LocalBus", "NodeKeys", "answer_in_process", "attestation_for"]

CPU = HardwareSummary(backend="cpu", gpu_name="", gpu_count=0, vram_mib=0, cpu_cores=2, ram_mib=4096)


class NodeKeys:
    """A node's signing identity and encryption key, fresh unless given."""

    def __init__(self, identity: Identity | None = None) -> None:
        self.identity = identity or Identity.generate()
        self.encryption = EncryptionKeyPair.generate()


def attestation_for(
    keys: NodeKeys, model: bytes, *, decode_tps: float, concurrency: int = 1, engine: str = "transformers"
) -> bytes:
    """A benchmark attestation signed by the node (what it claims about itself, true or not)."""
    attestation = BenchmarkAttestation(
        node_key=keys.identity.public_key,
        model=model,
        engine=engine,
        engine_version="test",
        hardware=CPU,
        prompt_tokens=128,
        output_tokens=32,
        concurrency=concurrency,
        prefill_tps_milli=round(decode_tps * 10_000),
        decode_tps_milli=round(decode_tps * 1000),
        ttft_ms=10,
        measured_at_ms=envelope.clock_ms(),
    )
    return envelope.sign(attestation, keys.identity, ttl_ms=BenchmarkAttestation.MAX_TTL_MS)


async def answer_in_process(
    engine: Engine,
    challenge: Challenge,
    *,
    model: bytes,
    keys: NodeKeys | None = None,
    attestation: bytes | None = None,
    session: Identity | None = None,
) -> Answer:
    """`engine`'s answer to `challenge` through both ends of a real exchange (see the module docstring);
    `session` is the client's key (a user who will report the answer needs it to countersign)."""
    keys = keys or NodeKeys()
    request = InferenceRequest(
        request_id=os.urandom(16),
        model=model,
        node_key=keys.identity.public_key,
        messages=tuple(ChatMessage(role=role, content=content) for role, content in challenge.messages),
        max_tokens=challenge.max_tokens,
        temperature_milli=round(challenge.temperature * 1000),
        top_p_milli=round(challenge.top_p * 1000),
        seed=challenge.seed,
        stop=challenge.stop,
    )
    client = ClientExchange(
        request, identity=session or Identity.generate(), node_encryption_key=keys.encryption.public_key
    )
    node = NodeExchange.accept(client.sealed_request, identity=keys.identity, encryption_keys=keys.encryption)
    client.receive(node.header())
    generation = GenerationRequest(
        messages=chat_turns(challenge.messages),
        max_tokens=challenge.max_tokens,
        temperature=challenge.temperature,
        top_p=challenge.top_p,
        seed=challenge.seed,
        stop=challenge.stop,
        priority=Priority.NETWORK,
    )
    started_ms = envelope.clock_ms()
    started = time.monotonic()
    first_token_ms = 0
    finish, prompt_tokens = "error", 0
    async for piece in engine.generate(generation):
        if piece.token_ids and not first_token_ms:
            first_token_ms = max(1, round((time.monotonic() - started) * 1000))
        if piece.token_ids or piece.text:
            logprobs = tuple(logprob_micro(lp) for lp in piece.logprobs)
            client.receive(node.chunk(piece.text, piece.token_ids, logprobs))
        if piece.finish_reason is not None:
            finish, prompt_tokens = piece.finish_reason, piece.prompt_tokens
    duration_ms = max(first_token_ms, round((time.monotonic() - started) * 1000))
    client.receive(
        node.end(
            finish,
            tokens_in=prompt_tokens,
            started_at_ms=started_ms,
            first_token_ms=first_token_ms,
            duration_ms=duration_ms,
        )
    )
    return answer_from_exchange(client, attestation=attestation)


class LocalBus:
    """Gossip between in-process validators (see the module docstring)."""

    def __init__(self) -> None:
        self.members: list[Validator] = []
        self.published: list[tuple[str, bytes]] = []
        self.verdicts: list[tuple[str, Verdict]] = []
        self._seqno = itertools.count()

    def join(self, validator: Validator) -> None:
        self.members.append(validator)

    def publisher(self, peer: Identity):
        """The `publish` of the validator whose peer key is `peer`."""

        async def publish(topic: str, data: bytes) -> None:
            await self.publish_as(peer, topic, data)

        return publish

    async def publish_as(self, peer: Identity, topic: str, data: bytes) -> None:
        """Deliver `data` on `topic` as if `peer` published it (tests use it to inject forgeries)."""
        self.published.append((topic, data))
        origin = peer_id_to_text(peer.peer_id)
        for member in list(self.members):
            if member.peer.public_key == peer.public_key:
                continue
            validate = member.topic_validators().get(topic)
            if validate is None:
                continue
            message = GossipMessage(
                topic=topic,
                data=data,
                origin=origin,
                forwarder=origin,
                seqno=next(self._seqno).to_bytes(8, "big"),
            )
            verdict = validate(message)
            self.verdicts.append((topic, verdict))
            if verdict is Verdict.ACCEPT:
                await member.deliver(topic, data)

    def count(self, topic: str) -> int:
        return sum(1 for t, _ in self.published if t == topic)
