"""GossipSub validators for topics whose payloads are signed envelopes (protocols.envelope).

Every Dolphin topic carries one message type inside a signed envelope. `signed_message_validator` runs
the checks all of them share, in this order, and a per-topic `authorise` callable adds who may send it:

- REJECT (the forwarder is scored down, gossipsub v1.1 P4): not an envelope of the expected type, bad
  signature, malformed fields, or an envelope signer other than the peer that published the message
  (a peer may relay others' messages but never publish in another's name), or `authorise` says no;
- IGNORE (dropped without penalty): outside its validity window, or replayed within it — stale gossip
  is normal on a mesh and says nothing about the forwarder;
- ACCEPT otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from p2p.gossip import GossipMessage, Validator, Verdict
from protocols import envelope
from protocols.errors import ExpiredError, ProtocolError, ReplayError
from protocols.keys import peer_id_to_text


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


Authorise = Callable[[envelope.Signed], "bool | Verdict"]


def signed_message_validator(
    message_type: type,
    *,
    authorise: Authorise | None = None,
    replay: envelope.ReplayCache | None = None,
) -> Validator:
    """A topic validator for envelopes of `message_type`, optionally restricted by `authorise`.

    `authorise` gets the verified envelope and returns True (accept), False (reject) or a Verdict of its
    own (IGNORE for news that is merely stale, e.g. an older sequence number); a ProtocolError rejects.
    `replay` remembers envelope nonces (a fresh cache per validator unless one is shared).
    """
    replay = envelope.ReplayCache() if replay is None else replay

    def validate(message: GossipMessage) -> Verdict:
        try:
            signed = envelope.open_signed(message.data, message_type)
        except ExpiredError:
            return Verdict.IGNORE
        except ProtocolError:
            return Verdict.REJECT
        if peer_id_to_text(signed.peer_id) != message.origin:
            return Verdict.REJECT
        # Only now is the nonce remembered: someone re-publishing a stolen envelope under their own
        # origin must not make the genuine publication look like a replay.
        try:
            replay.check_and_remember(signed.signer, signed.nonce, signed.expires_at_ms, _now_ms())
        except ReplayError:
            return Verdict.IGNORE
        if authorise is None:
            return Verdict.ACCEPT
        try:
            decision = authorise(signed)
        except ProtocolError:
            return Verdict.REJECT
        if isinstance(decision, Verdict):
            return decision
        return Verdict.ACCEPT if decision else Verdict.REJECT

    return validate
