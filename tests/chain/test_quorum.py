"""chain.quorum: the one way epoch roots and debit batches are signed (by the validator daemon and by
ChainClient alike), over the digest relays order the signatures by and the gossip book files them under."""

import pytest

from chain.client import ValidatorSet
from chain.merkle import RewardsTree
from chain.quorum import debit_batch_digest, debit_batch_signature, epoch_root_digest, epoch_root_signature
from protocols import testing as pt
from protocols.errors import SchemaError
from protocols.eth import TypedDomain, recover_digest, to_checksum_address
from protocols.messages import eth_signer
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
