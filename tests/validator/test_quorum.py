"""Signatures gathered over gossip: counted per exact message, only from the current set, to a quorum."""

import pytest

from chain.quorum import QuorumRule
from p2p import GossipMessage, Verdict
from protocols import envelope
from protocols import testing as pt
from protocols.eth import TypedDomain
from protocols.keys import peer_id_from_public_key, peer_id_to_text
from protocols.messages import CreditDebitSignature, SettlementSignature, eth_sign
from validator.quorum import SignatureBook

pytestmark = pytest.mark.unit

ROOTS = TypedDomain("Dolphin Network", "1", 31337, b"\2" * 20)
CREDITS = TypedDomain("Dolphin Network", "1", 31337, b"\3" * 20)
WALLETS = [pt.eth_account(n) for n in (1, 2, 3)]


def _root(wallet, root=b"\7" * 32, domain=ROOTS):
    return eth_sign(
        SettlementSignature,
        wallet,
        domain,
        validator=wallet.address,
        epoch=5,
        rewards_root=root,
        total_rewards=10**18,
        next_validators=tuple(sorted(w.address for w in WALLETS)),
        next_weights=(1, 1, 1),
        deadline=2**32,
    )


def _gossip(message, identity_n=1) -> GossipMessage:
    identity = pt.identity(identity_n)
    origin = peer_id_to_text(peer_id_from_public_key(identity.public_key))
    return GossipMessage("/dolphin/settlement/1", envelope.sign(message, identity), origin, origin, b"")


def test_signatures_add_up_only_for_the_same_message_and_the_current_set():
    book = SignatureBook(ROOTS, CREDITS, frozenset(w.address for w in WALLETS))
    rule = QuorumRule({w.address: 1 for w in WALLETS}, 2, 3)
    mine = book.add(_root(WALLETS[0]))
    assert book.validate(_gossip(_root(WALLETS[1]), 2)) is Verdict.ACCEPT
    assert book.validate(_gossip(_root(WALLETS[2], root=b"\x08" * 32), 3)) is Verdict.ACCEPT  # another root
    assert set(book.signatures(mine)) == {WALLETS[0].address, WALLETS[1].address}
    assert rule.reached(set(book.signatures(mine)))
    assert not rule.reached({WALLETS[2].address})
    # A stranger's signature is ignored; one signed in another domain (or forged) is rejected.
    assert book.validate(_gossip(_root(pt.eth_account(9)), 4)) is Verdict.IGNORE
    assert book.validate(_gossip(_root(WALLETS[2], domain=CREDITS), 3)) is Verdict.REJECT
    debit = eth_sign(
        CreditDebitSignature,
        WALLETS[1],
        CREDITS,
        validator=WALLETS[1].address,
        batch_id=1,
        users=(b"\1" * 20,),
        amounts=(5,),
        deadline=2**32,
    )
    assert book.validate(_gossip(debit, 2)) is Verdict.ACCEPT
    assert rule.reached(set()) is False
    assert QuorumRule({}, 2, 3).reached(set()) is False
