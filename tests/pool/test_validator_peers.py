"""The validator directory: only a wallet's own binding of a peer counts, and only for the current set."""

import time

import pytest

from p2p import GossipMessage, Verdict
from pool.validator_peers import ValidatorDirectory, sign_announcement
from protocols import testing as pt
from protocols.eth import TypedDomain
from protocols.keys import peer_id_from_public_key, peer_id_to_text
from protocols.messages import ValidatorAnnouncement

pytestmark = pytest.mark.unit

ADDRS = ["/ip4/127.0.0.1/tcp/4001"]


def _message(data: bytes, identity_n: int) -> GossipMessage:
    origin = peer_id_to_text(peer_id_from_public_key(pt.identity(identity_n).public_key))
    return GossipMessage("/dolphin/validators/1", data, origin, origin, b"\0" * 8)


def _announcement(identity_n=1, wallet_n=1, *, peer_n=None, domain=pt.TEST_DOMAIN, expiry=None):
    peer = peer_id_from_public_key(pt.identity(peer_n or identity_n).public_key)
    return sign_announcement(
        pt.identity(identity_n),
        peer,
        pt.eth_account(wallet_n),
        domain,
        ADDRS,
        expiry=expiry or int(time.time()) + 600,
    )


def test_a_current_validator_announcing_its_own_peer_is_recorded():
    wallet = pt.eth_account(1)
    directory = ValidatorDirectory(pt.TEST_DOMAIN, frozenset({wallet.address}))
    assert directory.validate(_message(_announcement(), 1)) is Verdict.ACCEPT
    [peer] = directory.peers()
    assert peer.validator == wallet.address and peer.addrs == tuple(ADDRS)
    assert peer.peer_id == peer_id_to_text(peer_id_from_public_key(pt.identity(1).public_key))
    # The set changes: a member no more is not a validator's peer any more.
    directory.set_members(frozenset())
    assert directory.peers() == []


def test_forged_stale_and_outsider_announcements_are_not_recorded():
    wallet = pt.eth_account(1)
    directory = ValidatorDirectory(pt.TEST_DOMAIN, frozenset({wallet.address}))
    other_chain = TypedDomain("Dolphin Network", "1", 1, b"\1" * 20)
    # Signed for another chain's quorum: the wallet did not bind this peer here.
    assert directory.validate(_message(_announcement(domain=other_chain), 1)) is Verdict.REJECT
    # A peer claiming another peer's binding (envelope by peer 2, announcing peer 1).
    assert directory.validate(_message(_announcement(2, peer_n=1), 2)) is Verdict.REJECT
    # An expired binding, and a wallet outside the current set: ignored, not punished.
    assert directory.validate(_message(_announcement(expiry=int(time.time()) - 1), 1)) is Verdict.IGNORE
    assert directory.validate(_message(_announcement(3, 9), 3)) is Verdict.IGNORE
    assert directory.validate(_message(b"\x93junk", 1)) is Verdict.REJECT
    assert directory.peers() == []


def test_without_a_chain_any_correctly_signed_wallet_counts():
    directory = ValidatorDirectory(pt.TEST_DOMAIN)
    assert directory.validate(_message(_announcement(4, 7), 4)) is Verdict.ACCEPT
    assert [p.validator for p in directory.peers()] == [pt.eth_account(7).address]
    assert ValidatorAnnouncement.MIN_TTL_MS == 15_000
