"""What the pool watcher keeps, fed hand-made gossip: bans, validators' standings, attestations, the
chain-facts cache, and how a model name chooses among the ids announced under it."""

import dataclasses

import pytest
import trio

from chain import areas
from p2p import GossipMessage, Verdict
from pool.attestations import AttestationBook
from pool.bans import DEFAULT_SEVERITIES, BanList, canonical_order
from pool.chainfacts import ChainFacts
from pool.standing import StandingBook
from protocols import envelope
from protocols import testing as pt
from protocols.eth import keccak256, to_checksum_address
from protocols.keys import peer_id_from_public_key, peer_id_to_text
from protocols.messages import (
    BanNotice,
    BenchmarkAttestation,
    HardwareSummary,
    NodeStanding,
    StrikeReport,
    eth_sign,
)

pytestmark = pytest.mark.unit

NODE, PUBLISHER = pt.identity(1), pt.identity(2)
VALIDATORS = {pt.eth_account(n).address for n in (1, 2, 3)}
NOW = envelope.clock_ms()


def _gossip(signer, data: bytes) -> GossipMessage:
    sender = peer_id_to_text(peer_id_from_public_key(signer.public_key))
    return GossipMessage(topic="/t", data=data, origin=sender, forwarder=sender, seqno=b"\1")


def _standing(validator_n: int, status: str, *, epoch: int = 3, suspicion: float = 0.0, node=NODE):
    account = pt.eth_account(validator_n)
    standing = eth_sign(
        NodeStanding,
        account,
        pt.TEST_DOMAIN,
        validator=account.address,
        node_key=node.public_key,
        model=pt.TEST_MODEL,
        epoch=epoch,
        checks=10,
        failures=0 if status == "good" else 2,
        suspicion_micro=round(suspicion * 1e6),
        status=status,
    )
    return _gossip(PUBLISHER, envelope.sign(standing, PUBLISHER))


def test_standing_is_the_majority_verdict_of_current_validators_ties_going_to_the_worse():
    current = set(VALIDATORS)
    book = StandingBook(pt.TEST_DOMAIN, current.__contains__)
    assert book.standing(NODE.public_key, pt.TEST_MODEL) is None
    assert book.validate(_standing(1, "good", suspicion=0.1)) is Verdict.ACCEPT
    assert book.validate(_standing(2, "suspect", suspicion=0.5)) is Verdict.ACCEPT
    standing = book.standing(NODE.public_key, pt.TEST_MODEL)
    assert (standing.status, standing.validators) == ("suspect", 2) and standing.suspicion == pytest.approx(
        0.3
    )
    assert book.validate(_standing(3, "good")) is Verdict.ACCEPT
    assert book.standing(NODE.public_key, pt.TEST_MODEL).status == "good"
    # A non-validator's verdict is rejected; an older epoch is not news; a validator that left stops counting.
    assert book.validate(_standing(7, "banned")) is Verdict.REJECT
    assert book.validate(_standing(1, "banned", epoch=2)) is Verdict.IGNORE
    current.discard(pt.eth_account(3).address)
    assert book.standing(NODE.public_key, pt.TEST_MODEL).status == "suspect"
    forged = dataclasses.replace(
        envelope.open_signed(_standing(1, "good").data, NodeStanding).message, status="excluded"
    )
    assert book.validate(_gossip(PUBLISHER, envelope.sign(forged, PUBLISHER))) is Verdict.REJECT


def _ban(*validator_ns: int, ttl_ms: int | None = None) -> GossipMessage:
    strikes = []
    for n in validator_ns:
        account = pt.eth_account(n)
        strikes.append(
            eth_sign(
                StrikeReport,
                account,
                pt.TEST_DOMAIN,
                validator=account.address,
                node_key=NODE.public_key,
                operator=b"\2" * 20,
                model=pt.TEST_MODEL,
                epoch=1,
                reason="wrong_model",
                severity=10,
                evidence_hash=keccak256(b"e"),
            )
        )
    notice = BanNotice(
        node_key=NODE.public_key,
        operator=b"\2" * 20,
        model=pt.TEST_MODEL,
        epoch=1,
        until_epoch=0,
        reason="wrong_model",
        strikes=tuple(canonical_order(strikes)),  # as validators list them
    )
    return _gossip(PUBLISHER, envelope.sign(notice, PUBLISHER, ttl_ms=ttl_ms))


def test_a_ban_list_records_bans_of_enough_validators_until_their_notice_expires():
    bans = BanList(pt.TEST_DOMAIN, VALIDATORS.__contains__)
    assert bans.validate(_ban(1)) is Verdict.REJECT and not bans.banned(NODE.public_key)
    assert bans.validate(_ban(1, 9)) is Verdict.REJECT and not bans.banned(NODE.public_key)
    assert bans.validate(_ban(1, 2, ttl_ms=60_000)) is Verdict.ACCEPT
    assert bans.banned(NODE.public_key) and len(bans) == 1
    assert not bans.banned(NODE.public_key, now_ms=envelope.clock_ms() + 61_000)
    assert len(bans) == 0


def _attestation(signer, *, concurrency: int, tps: float, ttft_ms: int, at: int = 1) -> GossipMessage:
    attestation = BenchmarkAttestation(
        node_key=NODE.public_key,
        model=pt.TEST_MODEL,
        engine="transformers",
        engine_version="5",
        hardware=HardwareSummary(backend="cpu", gpu_name="", gpu_count=0, vram_mib=0, cpu_cores=2, ram_mib=1),
        prompt_tokens=128,
        output_tokens=32,
        concurrency=concurrency,
        prefill_tps_milli=1,
        decode_tps_milli=round(tps * 1000),
        ttft_ms=ttft_ms,
        measured_at_ms=at,
    )
    return _gossip(signer, envelope.sign(attestation, signer))


def test_attested_speed_is_the_single_stream_run_and_a_validators_measurement_wins():
    validator_peer = pt.identity(5)
    book = AttestationBook(pt.TEST_MODEL, lambda key: key == validator_peer.public_key)
    assert book.speed(NODE.public_key) is None
    assert book.validate(_attestation(NODE, concurrency=8, tps=400, ttft_ms=90)) is Verdict.ACCEPT
    assert book.validate(_attestation(NODE, concurrency=1, tps=100, ttft_ms=20)) is Verdict.ACCEPT
    claimed = book.speed(NODE.public_key)
    assert (claimed.tokens_per_s, claimed.ttft_s, claimed.by_validator) == (100, 0.02, False)
    assert book.validate(_attestation(validator_peer, concurrency=1, tps=30, ttft_ms=50)) is Verdict.ACCEPT
    measured = book.speed(NODE.public_key)
    assert (measured.tokens_per_s, measured.by_validator) == (30, True)
    assert book.validate(_attestation(pt.identity(6), concurrency=1, tps=1, ttft_ms=1)) is Verdict.REJECT


class _FakeChain:
    """A chain reader answering from dicts, counting reads, failing on demand."""

    def __init__(self) -> None:
        self.validators = [to_checksum_address(pt.eth_account(1).address)]
        self.nodes: set[tuple[str, bytes]] = set()
        self.bonds: dict[str, int] = {}
        self.down = False
        self.calls = 0
        # The typed reads ChainFacts uses, answered by `call` below as a ChainClient's are by the chain.
        self.bonding, self.slashing = areas.Bonding(self), areas.Slashing(self)
        self.validator_quorum = areas.ValidatorQuorum(self)

    def call(self, contract: str, function: str, *args, block="latest"):
        from chain.errors import ChainError

        self.calls += 1
        if self.down:
            raise ChainError("the chain is down")
        if function == "validators":
            return self.validators, [1] * len(self.validators)
        if function == "isNodeOf":
            return (args[0], args[1]) in self.nodes
        if function == "strikeRules":
            return list(DEFAULT_SEVERITIES), list(DEFAULT_SEVERITIES.values()), 12, 2, 7, 0, 0
        return self.bonds.get(args[0], 0)


@pytest.mark.trio
async def test_chain_facts_are_cached_read_off_the_loop_and_kept_when_the_chain_is_down():
    chain = _FakeChain()
    operator, peer = pt.eth_account(2).address, b"\x12\x20" + b"\7" * 32
    chain.nodes.add((to_checksum_address(operator), keccak256(peer)))
    chain.bonds[to_checksum_address(operator)] = 5
    facts = ChainFacts(chain, refresh_s=3600)
    await facts.refresh()
    assert facts.is_validator(pt.eth_account(1).address) and not facts.is_validator(operator)
    # Unknown facts answer "no" at once and are read in the next round, which they wake.
    assert not facts.registered(peer, operator) and not facts.bonded(operator)
    assert not facts.registered(peer, None)
    async with trio.open_nursery() as nursery:
        await nursery.start(facts.serve)
        with trio.fail_after(10):
            while not (facts.registered(peer, operator) and facts.bonded(operator)):
                await facts.wait_refreshed()
        chain.down = True
        rounds = facts.rounds
        await facts.refresh()  # logged, not raised; the last facts stay
        assert facts.rounds == rounds and facts.registered(peer, operator)
        nursery.cancel_scope.cancel()
