"""chain.quorum: the one way epoch roots and debit batches are signed (by the validator daemon and by
ChainClient alike), over the digest relays order the signatures by and the gossip book files them under;
and the one quorum rule, ValidatorQuorum's (tests/contracts/test_ValidatorQuorum.py holds it to the
contract itself)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.client import ValidatorSet
from chain.merkle import RewardsTree
from chain.quorum import (
    QuorumRule,
    debit_batch_digest,
    debit_batch_signature,
    epoch_root_digest,
    epoch_root_signature,
    quorum_order,
)
from protocols import testing as pt
from protocols.errors import SchemaError
from protocols.eth import TypedDomain, recover_digest, to_checksum_address
from protocols.messages import eth_signer
from tests.examples import examples
from validator.quorum import signed_digest

pytestmark = pytest.mark.unit

WALLETS = [pt.eth_account(n) for n in (1, 2, 3)]
ROOTS = TypedDomain("Dolphin Network", "1", 31337, b"\2" * 20)
CREDITS = TypedDomain("Dolphin Network", "1", 31337, b"\3" * 20)
NEXT_SET = ValidatorSet.of({to_checksum_address(w.address): n + 1 for n, w in enumerate(WALLETS)})
TREE = RewardsTree.build({"0x" + "11" * 20: 5 * 10**18, "0x" + "22" * 20: 7})
DEADLINE = 2**32


def test_an_epoch_root_is_signed_over_the_digest_it_is_relayed_and_gossiped_under():
    wallet = WALLETS[0]
    signed = epoch_root_signature(wallet, ROOTS, 7, TREE, DEADLINE, NEXT_SET)
    digest = epoch_root_digest(ROOTS, 7, TREE, DEADLINE, NEXT_SET)
    assert recover_digest(digest, signed.signature) == wallet.address == eth_signer(signed, ROOTS)
    assert signed_digest(signed, ROOTS) == digest
    assert (signed.rewards_root, signed.total_rewards) == (TREE.root, TREE.total)
    assert signed.next_validators == tuple(bytes.fromhex(m[2:]) for m in NEXT_SET.members)
    assert signed.next_weights == NEXT_SET.weights
    # Another next set, tree, deadline or contract is another message.
    carried = ValidatorSet.of({to_checksum_address(w.address): 1 for w in WALLETS})
    other_tree = RewardsTree.build({"0x" + "11" * 20: 5 * 10**18})
    assert digest not in {
        epoch_root_digest(ROOTS, 7, TREE, DEADLINE, carried),
        epoch_root_digest(ROOTS, 7, other_tree, DEADLINE, NEXT_SET),
        epoch_root_digest(ROOTS, 7, TREE, DEADLINE + 1, NEXT_SET),
        epoch_root_digest(CREDITS, 7, TREE, DEADLINE, NEXT_SET),
    }


def test_a_debit_batch_is_signed_over_the_digest_it_is_relayed_and_gossiped_under():
    wallet = WALLETS[1]
    users, amounts = (b"\1" * 20, b"\2" * 20), (5, 6)
    signed = debit_batch_signature(wallet, CREDITS, 3, users, amounts, DEADLINE)
    digest = debit_batch_digest(CREDITS, 3, users, amounts, DEADLINE)
    assert recover_digest(digest, signed.signature) == wallet.address == eth_signer(signed, CREDITS)
    assert signed_digest(signed, CREDITS) == digest
    assert digest != debit_batch_digest(CREDITS, 3, users, (5, 7), DEADLINE)


def test_a_batch_the_contract_would_refuse_for_its_shape_is_not_signed():
    with pytest.raises(SchemaError, match="same length"):
        debit_batch_signature(WALLETS[0], CREDITS, 3, (b"\1" * 20, b"\2" * 20), (5,), DEADLINE)


# ---------------------------------------------------------------------------------------------- the rule

A, B, C, D = (bytes([n]) * 20 for n in (0x0A, 0x0B, 0xA0, 0xB0))


def test_two_thirds_of_the_weight_is_a_quorum_and_less_is_not():
    equal = QuorumRule.equal_weights([A, B, C])
    assert equal.reached({A, B}) and equal.reached({A, B, C}) and not equal.reached({C})
    weighted = QuorumRule({A: 1, B: 1, C: 1, D: 1})  # two thirds of 4 is 2.67: three members are needed
    assert not weighted.reached({A, B}) and weighted.reached({A, B, C})
    assert QuorumRule({A: 2, B: 1}).reached({A})  # exactly two thirds is enough
    assert not QuorumRule({}).reached(set()) and not equal.reached(set())


def test_a_stranger_weighs_nothing_and_a_judged_member_counts_on_neither_side():
    rule = QuorumRule({A: 1, B: 1, C: 1})
    assert not rule.reached({A, D}) and not rule.is_validator(D)
    # Slashing C: two thirds of A and B's weight, and C's own signature adds nothing.
    assert rule.reached({A, B}, excluded=C) and not rule.reached({A, C}, excluded=C)
    assert not QuorumRule({A: 1}).reached({A}, excluded=A)


def test_a_quorum_s_signatures_come_in_the_contract_s_order():
    rule = QuorumRule({A: 1, B: 1, C: 1, D: 1})
    signed = {D: b"d", A: b"a", C: b"c"}
    # Ascending by signer address, whatever order they were gathered in (checkQuorum refuses any other).
    assert rule.quorum_signatures(signed) == quorum_order(signed) == [b"a", b"c", b"d"]
    assert rule.quorum_signatures({D: b"d", A: b"a"}) is None


@settings(max_examples=examples(200), deadline=None)
@given(
    weights=st.lists(st.integers(1, 10**30), min_size=1, max_size=8),
    signing=st.lists(st.booleans(), min_size=8, max_size=8),
    fraction=st.tuples(st.integers(1, 100), st.integers(1, 100)).filter(lambda f: f[0] <= f[1]),
)
def test_the_rule_is_the_contract_s_required_weight(weights, signing, fraction):
    """ValidatorQuorum: signed weight ≥ ceil(total × numerator / denominator) (Math.mulDiv rounding up)."""
    members = [bytes([n + 1]) * 20 for n in range(len(weights))]
    rule = QuorumRule(dict(zip(members, weights, strict=True)), *fraction)
    signers = {m for m, signs in zip(members, signing, strict=False) if signs}
    required = -(-sum(weights) * fraction[0] // fraction[1])
    assert rule.reached(signers) == (sum(rule.weights[s] for s in signers) >= required)
