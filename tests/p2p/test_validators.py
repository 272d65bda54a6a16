"""Topic validators: the shared envelope checks, attestations, strike reports and bans."""

import dataclasses

import pytest

from p2p import GossipMessage, Verdict, signed_message_validator
from pool.attestations import attestation_validator
from pool.bans import BanRules, canonical_order
from protocols import envelope
from protocols import testing as pt
from protocols.keys import Identity, peer_id_from_public_key, peer_id_to_text
from protocols.messages import BanNotice, BenchmarkAttestation, HardwareSummary, StrikeReport, eth_sign
from protocols.messages import evidence_hash as hash_evidence
from validator.gossip import ban_validator, strike_validator

pytestmark = pytest.mark.unit
NODE, VALIDATOR_PEER, STRANGER = pt.identity(1), pt.identity(2), pt.identity(3)
VALIDATORS = {pt.eth_account(1).address, pt.eth_account(2).address}


def _gossip(signer, data: bytes, origin=None) -> GossipMessage:
    sender = origin or peer_id_to_text(peer_id_from_public_key(signer.public_key))
    return GossipMessage(topic="/t", data=data, origin=sender, forwarder=sender, seqno=b"\1")


def _attestation(**overrides) -> BenchmarkAttestation:
    fields = dict(
        node_key=NODE.public_key,
        model=pt.TEST_MODEL,
        engine="transformers",
        engine_version="5.23.0",
        hardware=HardwareSummary(
            backend="cpu", gpu_name="", gpu_count=0, vram_mib=0, cpu_cores=2, ram_mib=24_000
        ),
        prompt_tokens=128,
        output_tokens=64,
        concurrency=1,
        prefill_tps_milli=900_000,
        decode_tps_milli=40_000,
        ttft_ms=120,
        measured_at_ms=1,
    )
    return BenchmarkAttestation(**(fields | overrides))


def _strike(validator_n: int, node=NODE, *, reason="too_fast", epoch=7, severity=3) -> StrikeReport:
    account = pt.eth_account(validator_n)
    return eth_sign(
        StrikeReport,
        account,
        pt.TEST_DOMAIN,
        validator=account.address,
        node_key=node.public_key,
        operator=b"\2" * 20,
        model=pt.TEST_MODEL,
        epoch=epoch,
        reason=reason,
        severity=severity,
        evidence_hash=hash_evidence((b"receipt",)),
        evidence=(b"receipt",),
    )


def test_envelope_checks_shared_by_every_topic():
    validate = signed_message_validator(BenchmarkAttestation)
    data = envelope.sign(_attestation(), NODE)
    assert validate(_gossip(NODE, data)) is Verdict.ACCEPT
    assert validate(_gossip(NODE, data)) is Verdict.IGNORE  # the same envelope again: a replay
    # Published in another peer's name, a flipped bit, the wrong type, an expired envelope.
    other = envelope.sign(_attestation(), NODE)
    stranger = peer_id_to_text(peer_id_from_public_key(STRANGER.public_key))
    assert validate(_gossip(NODE, other, origin=stranger)) is Verdict.REJECT
    assert validate(_gossip(NODE, other)) is Verdict.ACCEPT  # the stolen copy did not spend its nonce
    flipped = bytearray(envelope.sign(_attestation(), NODE))
    flipped[-3] ^= 1
    assert validate(_gossip(NODE, bytes(flipped))) is Verdict.REJECT
    assert validate(_gossip(NODE, envelope.sign(_strike(1), NODE))) is Verdict.REJECT
    old = envelope.sign(_attestation(), NODE, now_ms=1_000, ttl_ms=1_000)
    assert validate(_gossip(NODE, old)) is Verdict.IGNORE


def test_attestations_come_from_the_node_itself_or_a_validator():
    validate = attestation_validator(pt.TEST_MODEL, lambda key: key == VALIDATOR_PEER.public_key)
    assert validate(_gossip(NODE, envelope.sign(_attestation(), NODE))) is Verdict.ACCEPT
    assert validate(_gossip(VALIDATOR_PEER, envelope.sign(_attestation(), VALIDATOR_PEER))) is Verdict.ACCEPT
    assert validate(_gossip(STRANGER, envelope.sign(_attestation(), STRANGER))) is Verdict.REJECT
    wrong_model = envelope.sign(_attestation(model=b"\5" * 32), NODE)
    assert validate(_gossip(NODE, wrong_model)) is Verdict.REJECT


def test_only_current_validators_strike():
    validate = strike_validator(pt.TEST_DOMAIN, VALIDATORS.__contains__)
    assert validate(_gossip(VALIDATOR_PEER, envelope.sign(_strike(1), VALIDATOR_PEER))) is Verdict.ACCEPT
    assert validate(_gossip(VALIDATOR_PEER, envelope.sign(_strike(5), VALIDATOR_PEER))) is Verdict.REJECT
    # A report whose EIP-712 signature was made by someone else than the validator it names.
    forged = dataclasses.replace(_strike(5), validator=pt.eth_account(1).address)
    assert validate(_gossip(VALIDATOR_PEER, envelope.sign(forged, VALIDATOR_PEER))) is Verdict.REJECT


def _ban(*strikes, epoch=7):
    notice = BanNotice(
        node_key=NODE.public_key,
        operator=b"\2" * 20,
        model=pt.TEST_MODEL,
        epoch=epoch,
        until_epoch=0,
        reason=strikes[0].reason,
        strikes=tuple(canonical_order(strikes)),  # as validators list them
    )
    return _gossip(VALIDATOR_PEER, envelope.sign(notice, VALIDATOR_PEER))


def test_a_ban_needs_strikes_from_enough_distinct_validators():
    validate = ban_validator(pt.TEST_DOMAIN, VALIDATORS.__contains__)
    severe = dict(reason="wrong_model")
    assert validate(_ban(_strike(1, **severe), _strike(2, **severe))) is Verdict.ACCEPT
    assert validate(_ban(_strike(1, **severe), _strike(1, reason="fabricated_output"))) is Verdict.REJECT
    assert validate(_ban(_strike(1, **severe), _strike(5, **severe))) is Verdict.REJECT  # 5 is no validator


def test_an_outsiders_notice_of_counted_strikes_that_do_not_add_up_bans_no_one():
    """Attack (security review): anyone stitched two minor strikes of two validators into a BanNotice, and
    every router and validator accepted it. The rules are now re-applied to the strikes themselves."""
    outsider = Identity.generate()
    validate = ban_validator(pt.TEST_DOMAIN, VALIDATORS.__contains__)

    def from_outsider(*strikes, epoch=7):
        notice = BanNotice(
            node_key=NODE.public_key,
            operator=b"\2" * 20,
            model=pt.TEST_MODEL,
            epoch=epoch,
            until_epoch=0,
            reason=strikes[0].reason,
            strikes=tuple(canonical_order(strikes)),
        )
        return _gossip(outsider, envelope.sign(notice, outsider))

    minor = (_strike(1, reason="too_slow"), _strike(2, reason="too_fast"))  # 3 + 5 < 12 points
    assert validate(from_outsider(*minor)) is Verdict.REJECT
    # A strike's own severity claim counts for nothing: the rules price its reason.
    inflated = (_strike(1, reason="too_slow", severity=10), _strike(2, reason="unavailable", severity=10))
    assert validate(from_outsider(*inflated)) is Verdict.REJECT
    # Severe strikes, but dated outside the window that ends at the notice's epoch.
    severe = (_strike(1, reason="wrong_model"), _strike(2, reason="fabricated_output"))
    assert validate(from_outsider(*severe, epoch=7 + BanRules().window_epochs)) is Verdict.REJECT
    assert validate(from_outsider(*severe, epoch=6)) is Verdict.REJECT  # strikes after the notice
    assert validate(from_outsider(*severe, epoch=8)) is Verdict.ACCEPT  # a ban the rules do justify


def test_the_chains_rules_decide_not_the_defaults():
    rules = BanRules(ban_points=8)
    validate = ban_validator(pt.TEST_DOMAIN, VALIDATORS.__contains__, lambda: rules)
    assert validate(_ban(_strike(1, reason="too_slow"), _strike(2, reason="too_fast"))) is Verdict.ACCEPT
    rules = dataclasses.replace(rules, ban_validators=3)
    assert validate(_ban(_strike(1, reason="too_slow"), _strike(2, reason="wrong_model"))) is Verdict.REJECT


def test_refused_messages_spend_no_nonce_and_take_no_room():
    """Before, the nonce was remembered before `authorise`: messages it rejected (heartbeats from unbonded
    peers, say) filled the replay cache, its floor rose, and an honest message was then ignored."""
    cache = envelope.ReplayCache(capacity=4)
    validate = signed_message_validator(
        BenchmarkAttestation, authorise=lambda signed: signed.signer == NODE.public_key, replay=cache
    )
    for n in range(10, 20):  # strangers' long-lived messages, all rejected by `authorise`
        stranger = pt.identity(n)
        flood = envelope.sign(_attestation(), stranger, ttl_ms=BenchmarkAttestation.MAX_TTL_MS)
        assert validate(_gossip(stranger, flood)) is Verdict.REJECT
    assert len(cache) == 0
    honest = envelope.sign(_attestation(), NODE, ttl_ms=60_000)
    assert validate(_gossip(NODE, honest)) is Verdict.ACCEPT
    assert validate(_gossip(NODE, honest)) is Verdict.IGNORE


def test_on_accept_sees_only_accepted_messages_and_busy_is_ignored():
    accepted = []
    validate = signed_message_validator(
        BenchmarkAttestation, on_accept=accepted.append, replay=envelope.ReplayCache(per_signer=2)
    )
    verdicts = [validate(_gossip(NODE, envelope.sign(_attestation(), NODE))) for _ in range(3)]
    assert verdicts == [Verdict.ACCEPT, Verdict.ACCEPT, Verdict.IGNORE]  # the third: over NODE's quota
    assert len(accepted) == 2 and all(s.signer == NODE.public_key for s in accepted)
