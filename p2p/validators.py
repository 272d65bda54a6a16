"""GossipSub validators for topics whose payloads are signed envelopes (protocols.envelope).

Every Dolphin topic carries one message type inside a signed envelope. `signed_message_validator` runs
the checks all of them share, in this order, and a per-topic `authorise` callable adds who may send it:

- REJECT (the forwarder is scored down, gossipsub v1.1 P4): not an envelope of the expected type, bad
  signature, malformed fields, or an envelope signer other than the peer that published the message
  (a peer may relay others' messages but never publish in another's name), or `authorise` says no;
- IGNORE (dropped without penalty): outside its validity window, replayed within it, or the replay cache
  has no room for it (its signer's quota or the whole cache is full) — stale gossip is normal on a mesh
  and says nothing about the forwarder;
- ACCEPT otherwise, and then `on_accept` records it.

The nonce is remembered last, after `authorise`: a message refused for any reason takes no room in the
replay cache, so rejected messages (say, heartbeats from unbonded peers) cannot crowd out honest ones.
"""

from __future__ import annotations

from collections.abc import Callable

from p2p.gossip import GossipMessage, Validator, Verdict
from protocols import envelope
from protocols.errors import ExpiredError, ProtocolError, ReplayError
from protocols.keys import peer_id_to_text
from protocols.schema import Message

Authorise = Callable[[envelope.Signed], "bool | Verdict"]


def signed_message_validator(
    message_type: type[Message] | tuple[type[Message], ...],
    *,
    authorise: Authorise | None = None,
    on_accept: Callable[[envelope.Signed], None] | None = None,
    replay: envelope.ReplayCache | None = None,
) -> Validator:
    """A topic validator for envelopes of `message_type`, optionally restricted by `authorise`.

    `authorise` gets the verified envelope and returns True (accept), False (reject) or a Verdict of its
    own (IGNORE for news that is merely stale, e.g. an older sequence number); a ProtocolError rejects.
    It must not change state: a message it approves may still be a replay. `on_accept` runs once a message
    is accepted (its nonce remembered). `replay` remembers envelope nonces (a fresh cache per validator
    unless one is shared).
    """
    replay = envelope.ReplayCache() if replay is None else replay

    def validate(message: GossipMessage) -> Verdict:
        now = envelope.clock_ms()
        try:
            signed: envelope.Signed[Message] = envelope.open_signed(message.data, message_type, now_ms=now)
        except ExpiredError:
            return Verdict.IGNORE
        except ProtocolError:
            return Verdict.REJECT
        # A stolen envelope re-published under another origin is rejected before its nonce is spent, so
        # the genuine publication is not mistaken for a replay.
        if peer_id_to_text(signed.peer_id) != message.origin:
            return Verdict.REJECT
        if authorise is not None:
            try:
                decision = authorise(signed)
            except ProtocolError:
                return Verdict.REJECT
            if not isinstance(decision, Verdict):
                decision = Verdict.ACCEPT if decision else Verdict.REJECT
            if decision is not Verdict.ACCEPT:
                return decision
        try:
            replay.check_and_remember(signed.signer, signed.nonce, signed.expires_at_ms, now)
        except ReplayError:  # BusyError included
            return Verdict.IGNORE
        if on_accept is not None:
            on_accept(signed)
        return Verdict.ACCEPT

    return validate
