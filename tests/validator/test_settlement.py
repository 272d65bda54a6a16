"""Pure settlement: who pays, who earns, and the four ways receipts were minted into rewards before."""

import dataclasses
from fractions import Fraction

import pytest
from eth_utils import to_checksum_address

from chain.merkle import leaf_hash, verify
from chain.rewards import POD, RewardParams
from chain.rewards.base import PER_MILLION, base_rewards, emission
from chain.snapshot import ChainSnapshot
from protocols import codec, envelope
from protocols import testing as pt
from protocols.errors import ProtocolError, SchemaError
from protocols.eth import keccak256
from protocols.inference import countersign_receipt, verify_countersigned_receipt
from protocols.keys import peer_id_from_public_key
from protocols.messages import Receipt
from protocols.testing import authorisation, countersigned_receipt
from validator import Carry, EpochMarket, settle_epoch
from validator.settlement import counted_receipts, debit_batches, facts_of

pytestmark = pytest.mark.unit

EPOCH_MS = 10_000
EPOCH = 170_000_000
START = EPOCH * EPOCH_MS  # the first millisecond of EPOCH
OPERATOR_A = to_checksum_address("0x" + "aa" * 20)
OPERATOR_B = to_checksum_address("0x" + "bb" * 20)
PRICE = 1_000_000  # one unit per token
POD_PER_UNIT = Fraction(10**13)  # 0.1 USD per POD, with a 6-decimal payment token
WALLET = pt.eth_account(5)
OTHER_WALLET = pt.eth_account(6)


def _peer_hash(node_n: int) -> bytes:
    return keccak256(peer_id_from_public_key(pt.identity(node_n).public_key))


def _snapshot() -> ChainSnapshot:
    return ChainSnapshot(
        block=10,
        timepoint=1_000,
        params=RewardParams(),
        active_bonds={OPERATOR_A: 1_000 * POD, OPERATOR_B: 0},
        registered=frozenset({OPERATOR_A, OPERATOR_B}),
        slashed=frozenset(),
    )


def _market(**overrides) -> EpochMarket:
    values = dict(
        prices={pt.TEST_MODEL: PRICE},
        available={WALLET.address: 10**9, OTHER_WALLET.address: 10**9},
        operators={_peer_hash(2): OPERATOR_A, _peer_hash(3): OPERATOR_B},
        pod_per_unit=POD_PER_UNIT,
        credits_domain=pt.TEST_DOMAIN,
    )
    values.update(overrides)
    return EpochMarket(**values)


def _facts(receipts):
    return facts_of(verify_countersigned_receipt(data) for data in receipts)


def _settle(receipts, *, market=None, epoch=EPOCH, **kwargs):
    facts, credits = _facts(receipts)
    return settle_epoch(epoch, EPOCH_MS, facts, credits, _snapshot(), market or _market(), **kwargs)


def _paid(node_n=2, client_n=1, *, wallet=WALLET, at=START + 100, **kwargs):
    return countersigned_receipt(
        node_n=node_n,
        client_n=client_n,
        wallet=wallet,
        started_at_ms=at,
        prompt=f"{node_n}/{client_n}/{at}",
        **kwargs,
    )


def test_clients_pay_price_times_tokens_and_operators_earn_in_proportion():
    receipts = [
        _paid(2, 1, tokens_in=5, tokens_out=2),
        _paid(2, 1, at=START + 200, tokens_in=10, tokens_out=3),
        _paid(3, 7, wallet=OTHER_WALLET, tokens_in=20, tokens_out=4),
    ]
    settled = _settle(receipts)
    assert settled.payments.debits == {WALLET.address: 5 + 2 + 10 + 3, OTHER_WALLET.address: 24}
    assert settled.revenue == 44
    assert settled.payments.work == {OPERATOR_A: 20 * PRICE, OPERATOR_B: 24 * PRICE}
    # Half of the revenue, valued in POD: 44 units * 1e13 wei * 0.5.
    assert settled.emission == 44 * 10**13 // 2
    assert settled.paid(OPERATOR_A) == settled.emission * 20 // 44  # no snapshot yet: multiplier 1
    assert settled.paid(OPERATOR_B) == settled.emission * 24 // 44
    for account, amount in settled.cumulative.items():
        assert verify(settled.tree.proof(account), settled.tree.root, leaf_hash(account, amount))
    [batch] = settled.debits
    assert batch.batch_id == EPOCH << 16
    assert dict(zip(batch.users, batch.amounts, strict=True)) == settled.payments.debits
    assert list(batch.users) == sorted(batch.users)


def test_settling_again_from_the_same_evidence_gives_the_same_root_whatever_the_order():
    receipts = [_paid(2, n, at=START + n, tokens_out=n % 5) for n in range(1, 12)]
    first = _settle(receipts)
    again = _settle(list(reversed(receipts)))
    assert first.tree.root == again.tree.root
    assert first.receipts_commitment == again.receipts_commitment
    assert first.payments == again.payments
    # And the next epoch from a carry that went through JSON is the one from the carry in memory.
    later = [_paid(2, 1, at=START + EPOCH_MS + 5)]
    direct = _settle(later, epoch=EPOCH + 1, previous=first.carry())
    stored = _settle(later, epoch=EPOCH + 1, previous=Carry.from_json(first.carry().to_json()))
    assert direct.tree.root == stored.tree.root
    assert direct.cumulative[OPERATOR_A] == first.cumulative[OPERATOR_A] + direct.paid(OPERATOR_A)


# --------------------------------------------------------------------------- the four attacks (issue #13)


def _forged_counts_receipt(tokens_out: int, tokens_in: int) -> bytes:
    """A node that signs counts its request cannot explain, countersigned by a cooperative client."""
    honest = verify_countersigned_receipt(_paid(tokens_out=2)).receipt
    wire = honest.to_wire() | {"tokens_out": tokens_out, "tokens_in": tokens_in}
    node = pt.identity(2)
    signed_part = codec.pack(
        [Receipt.TYPE, Receipt.VERSION, node.public_key, b"\1" * 16, START, START + 3600_000, wire]
    )
    signature = node.sign(envelope._signing_input(envelope.domain_of(Receipt), signed_part))
    raw = codec.pack([envelope.ENVELOPE_VERSION, signed_part, signature])
    return countersign_receipt(raw, pt.identity(1))


def test_attack_counts_beyond_the_request_never_pay():
    """A request with max_tokens=16 came back countersigned with tokens_out=40960, tokens_in=2**32-1."""
    with pytest.raises(SchemaError, match="max_tokens"):
        verify_countersigned_receipt(_forged_counts_receipt(40960, 5))
    with pytest.raises(SchemaError, match="length in bytes"):
        verify_countersigned_receipt(_forged_counts_receipt(2, 4294967295))


def test_attack_self_countersigned_receipts_earn_nothing_unpaid_and_less_than_they_cost_paid():
    """An operator answers itself with throwaway client keys."""
    throwaway = [_paid(2, 100 + n, wallet=None, tokens_out=4) for n in range(5)]
    unpaid = _settle(throwaway)
    assert unpaid.payments.paid == 0
    assert unpaid.payments.unpaid == {"no credit authorisation": 5}
    assert unpaid.paid(OPERATOR_A) == 0 and unpaid.tree is None
    # Paying its own node with its own wallet: it gets back a bounded share of what it paid.
    own = [_paid(2, 100 + n, tokens_out=4) for n in range(5)]
    settled = _settle(own)
    cost_in_pod = settled.revenue * POD_PER_UNIT
    assert 0 < settled.paid(OPERATOR_A) <= cost_in_pod * Fraction(5000, 10_000)


def test_attack_a_receipt_pays_in_its_own_epoch_only():
    """A receipt dated 1970 was paid in epoch 7 and again in epoch 8."""
    ancient = _paid(at=100)
    assert _settle([ancient]).receipt_count == 0
    assert _settle([ancient], epoch=0).receipt_count == 1
    current = _paid(at=START + 5)
    assert _settle([current], epoch=EPOCH + 1).receipt_count == 0


def test_attack_the_paying_wallet_must_have_signed_for_this_session_model_and_time():
    """The receipt's payer was copied from an unverified authorisation, and expiry judged by the client."""
    session = pt.identity(1).public_key
    forged = dataclasses.replace(authorisation(pt.eth_account(9), session), client=WALLET.address)
    cases = {
        "authorisation not signed by its wallet": forged,
        "authorisation expired before the answer started": authorisation(
            WALLET, session, expiry=(START + 100) // 1000
        ),
        "authorisation for another session key or model": authorisation(WALLET, pt.identity(8).public_key),
    }
    for reason, credit in cases.items():
        # The node did not check (or checked in another domain): only settlement stands between the
        # receipt and the victim's credit.
        receipt = countersigned_receipt(credit=credit, started_at_ms=START + 100, node_checks_credit=False)
        settled = _settle([receipt])
        assert settled.payments.unpaid == {reason: 1}, reason
        assert settled.payments.debits == {}


def test_a_session_is_judged_once_but_each_receipt_at_its_own_time():
    """Whether a session's receipts pay is judged once per session (1M receipts have ~100k); expiry is
    still each receipt's, and it is the reason given before a free model or a bad signature, as the
    checks' order has it."""
    session = pt.identity(1).public_key
    forged = dataclasses.replace(
        authorisation(pt.eth_account(9), session, expiry=(START + 5000) // 1000), client=WALLET.address
    )
    expiring = authorisation(WALLET, session, expiry=(START + 5000) // 1000)  # expires at START + 5 s
    receipts = [
        countersigned_receipt(
            credit=credit, started_at_ms=START + at, prompt=f"{n}/{at}", node_checks_credit=False
        )
        for n, credit in enumerate((expiring, forged))
        for at in (4999, 5000, 2500, 5001, 1)  # before, at, before, after and before the expiry, in turn
    ]
    settled = _settle(receipts)
    assert settled.payments.paid == 3 and settled.payments.debits == {WALLET.address: 3 * 7}
    assert settled.payments.unpaid == {
        "authorisation expired before the answer started": 4,
        "authorisation not signed by its wallet": 3,
    }
    free = _settle(receipts[:5], market=_market(prices={}))
    assert free.payments.unpaid == {"authorisation expired before the answer started": 2, "free model": 3}


def test_counts_are_charged_in_order_up_to_the_authorisation_cap_and_the_credit():
    session = pt.identity(1).public_key
    capped = authorisation(WALLET, session, max_credits=10)
    receipts = [
        countersigned_receipt(
            credit=capped, started_at_ms=START + n, prompt=str(n), tokens_in=2, tokens_out=2
        )
        for n in range(4)
    ]
    settled = _settle(receipts)
    assert settled.payments.debits == {WALLET.address: 8}  # two of 4 tokens; a third would pass 10
    assert settled.payments.unpaid == {"over the authorisation's cap": 2}
    poor = _settle(receipts, market=_market(available={WALLET.address: 5}))
    assert poor.payments.debits == {WALLET.address: 4}
    assert poor.payments.unpaid == {"over the client's credit": 3}
    # The cap spans epochs: what was charged before counts.
    later = _settle(receipts, previous=Carry(charged=settled.payments.charged))
    assert later.payments.debits == {}
    assert later.payments.unpaid == {"over the authorisation's cap": 4}


def test_one_answer_counts_once_and_the_smallest_digest_is_chosen():
    one = _paid(tokens_out=2)
    verified = verify_countersigned_receipt(one)
    resigned = envelope.sign(verified.receipt, pt.identity(2), now_ms=START)  # same answer, new nonce
    other = countersign_receipt(resigned, pt.identity(1))
    facts, _ = _facts([one, other])
    [counted] = counted_receipts(facts, EPOCH, EPOCH_MS)
    assert counted.digest == min(f.digest for f in facts)
    assert _settle([one, other]).payments.debits == {WALLET.address: 7}


def test_unregistered_nodes_pay_their_clients_bill_but_earn_no_base_rewards():
    settled = _settle([_paid(4, 1, tokens_out=3), _paid(2, 2, tokens_out=3)])
    assert settled.revenue == 16
    assert settled.payments.work == {OPERATOR_A: 8 * PRICE}
    # Emission is measured on the registered nodes' revenue only.
    assert settled.emission == emission(8 * PRICE, POD_PER_UNIT, RewardParams())


def test_emission_is_capped_and_free_models_pay_nothing():
    params = RewardParams(epoch_emission_cap=10)
    assert emission(10**6 * PER_MILLION, POD_PER_UNIT, params) == 10
    free = _settle([_paid()], market=_market(prices={}))
    assert free.payments.unpaid == {"free model": 1}


def test_awards_are_paid_beside_the_engine():
    settled = _settle([_paid()], awards={OPERATOR_B.lower(): 7 * POD})
    assert settled.cumulative[OPERATOR_B] == 7 * POD
    assert settled.close.accounts[OPERATOR_B].state.lifetime == 0  # outside the earnings history


def test_base_reward_split_and_debit_batches():
    assert base_rewards({OPERATOR_A: 2, OPERATOR_B: 1}, 100) == {OPERATOR_A: 66, OPERATOR_B: 33}
    assert base_rewards({}, 100) == {}
    debits = {bytes([n]) * 20: n for n in range(1, 255)} | {b"\xff" * 20: 0}
    debits |= {bytes([1, n]) + b"\0" * 18: 1 for n in range(256)} | {
        bytes([2, n]) + b"\0" * 18: 1 for n in range(256)
    }
    batches = debit_batches(3, debits)
    assert [b.batch_id for b in batches] == [3 << 16, (3 << 16) | 1]
    assert sum(len(b.users) for b in batches) == len(debits) - 1  # zero debits are left out
    assert max(len(b.users) for b in batches) == 500


def test_a_forged_receipt_is_refused():
    receipt = bytearray(_paid())
    receipt[-5] ^= 1
    with pytest.raises(ProtocolError):
        verify_countersigned_receipt(bytes(receipt))


def test_authorisations_verified_on_the_way_in_are_not_recovered_again_and_settle_the_same(monkeypatch):
    """The close took ~8 s of a 1M-receipt epoch recovering signers admission had already checked: those
    the evidence store marks verified are taken as the wallet they name; the others are still checked, so
    a forged authorisation that reached the store unverified still pays nothing."""
    import validator.settlement as settlement

    forged = dataclasses.replace(
        authorisation(pt.eth_account(9), pt.identity(4).public_key), client=WALLET.address
    )
    receipts = [
        _paid(2, 1, tokens_out=3),
        _paid(3, 7, wallet=OTHER_WALLET, tokens_out=4),
        countersigned_receipt(client_n=4, credit=forged, started_at_ms=START + 50, node_checks_credit=False),
    ]
    facts, credits = _facts(receipts)
    recovered = []
    original = settlement.eth_signer
    monkeypatch.setattr(settlement, "eth_signer", lambda *a: recovered.append(a[0]) or original(*a))
    checked_here = settle_epoch(EPOCH, EPOCH_MS, facts, credits, _snapshot(), _market())
    assert len(recovered) == 3
    recovered.clear()
    honest = {digest for digest, credit in credits.items() if credit != forged}
    trusted = settle_epoch(EPOCH, EPOCH_MS, facts, credits, _snapshot(), _market(), verified_credits=honest)
    assert recovered == [forged]
    assert trusted.payments.unpaid == {"authorisation not signed by its wallet": 1}
    assert trusted.carry().to_json() == checked_here.carry().to_json()
    assert (trusted.tree.root, trusted.debits, trusted.payments) == (
        checked_here.tree.root,
        checked_here.debits,
        checked_here.payments,
    )
