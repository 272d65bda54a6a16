"""Organic audits, the client's side: an answer's prompt goes only to a peer that proves it speaks for a
current validator, and sampling follows the rates. Pure: no host, no network."""

import time

import pytest

from pool.audits import AnswerSharer, SharingSettings, verify_validator_announcement
from pool.validator_peers import sign_announcement
from protocols import testing as pt
from protocols.errors import ProtocolError
from protocols.eth import TypedDomain
from protocols.keys import Identity, peer_id_from_public_key, peer_id_to_text

pytestmark = pytest.mark.unit

DOMAIN = pt.TEST_DOMAIN
VALIDATOR = pt.eth_account(1)
SET = {VALIDATOR.address}


def _announcement(peer: Identity, wallet=VALIDATOR, *, claimed: Identity | None = None, expiry=None) -> bytes:
    """`wallet` binds `claimed` (default: `peer`), in an envelope `peer` signs."""
    claimed = claimed or peer
    return sign_announcement(
        peer,
        peer_id_from_public_key(claimed.public_key),
        wallet,
        DOMAIN,
        ["/ip4/127.0.0.1/tcp/4003"],
        expiry=expiry or int(time.time()) + 600,
    )


def _text(identity: Identity) -> str:
    return peer_id_to_text(peer_id_from_public_key(identity.public_key))


def test_a_current_validators_peer_is_trusted_with_the_answer():
    peer = Identity.generate()
    announcement = verify_validator_announcement(_announcement(peer), _text(peer), DOMAIN, SET.__contains__)
    assert announcement.validator == VALIDATOR.address


def test_peers_that_are_not_current_validators_get_no_prompt():
    """Attack: a peer (a node, or anyone in the DHT record) poses as a validator to collect prompts."""
    peer, other = Identity.generate(), Identity.generate()
    outsider = pt.eth_account(2)
    with pytest.raises(ProtocolError, match="not a current validator"):  # a wallet outside the set
        verify_validator_announcement(_announcement(peer, outsider), _text(peer), DOMAIN, SET.__contains__)
    with pytest.raises(ProtocolError, match="not by the peer"):  # replays a validator's announcement
        verify_validator_announcement(_announcement(other), _text(peer), DOMAIN, SET.__contains__)
    with pytest.raises(ProtocolError, match="not by the peer"):  # binds a peer it is not
        verify_validator_announcement(
            _announcement(peer, claimed=other), _text(peer), DOMAIN, SET.__contains__
        )
    with pytest.raises(ProtocolError, match="expired"):
        stale = _announcement(peer, expiry=int(time.time()) - 1)
        verify_validator_announcement(stale, _text(peer), DOMAIN, SET.__contains__)
    with pytest.raises(ProtocolError):  # signed for another chain's contract
        elsewhere = TypedDomain("Dolphin Network", "1", 1, b"\1" * 20)
        verify_validator_announcement(_announcement(peer), _text(peer), elsewhere, SET.__contains__)


def test_suspect_nodes_are_audited_by_their_users_more():
    standings = {b"good": "good", b"suspect": "suspect", b"banned": "banned"}
    sharer = AnswerSharer(
        None,  # type: ignore[arg-type]  # no answer is sent here
        DOMAIN,
        SET.__contains__,
        standing=lambda node_key, model: standings.get(node_key),
    )
    assert sharer.rate_for(b"good", b"m") == sharer.rate_for(b"unknown", b"m") == 0.05
    assert sharer.rate_for(b"suspect", b"m") == sharer.rate_for(b"banned", b"m") == 0.5
    with pytest.raises(ValueError, match="probabilities"):
        SharingSettings(rate=1.5)
