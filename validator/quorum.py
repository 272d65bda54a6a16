"""Validators' signatures on what the chain accepts from a quorum (epoch roots, credit debit batches),
gathered over SETTLEMENT_TOPIC.

Each validator signs what it computed (`SettlementSignature` in the RewardsDistributor's EIP-712 domain,
`CreditDebitSignature` in the Credits domain) and publishes it in an envelope signed by its peer key.
Signatures are filed by the EIP-712 digest they sign, so they add up only for exactly the same message:
two validators that computed different roots never count towards each other's quorum. The topic
validator:

- REJECT: not one of the two envelopes, or an Ethereum signature that is not by the validator it names;
- IGNORE: a signer outside the current validator set (it may just have left), or a full book;
- ACCEPT: filed.

Whether a message's signers are a quorum is chain.quorum's `QuorumRule`, the contract's own count.
"""

from __future__ import annotations

from collections import OrderedDict

from p2p import Verdict, signed_message_validator
from protocols import envelope
from protocols.eth import TypedDomain
from protocols.messages import CreditDebitSignature, SettlementSignature, eth_digest, eth_signer

__all__ = ["SignatureBook", "signed_digest"]

MAX_DIGESTS = 4096


def signed_digest(message: SettlementSignature | CreditDebitSignature, domain: TypedDomain) -> bytes:
    """The EIP-712 digest `message`'s signature signs (what its quorum is counted for)."""
    return eth_digest(type(message), domain, lambda name: getattr(message, name))


class SignatureBook:
    """Validator signatures by the digest they sign; `validate` is SETTLEMENT_TOPIC's GossipSub validator.

    `members` is the current validator set (None: any signer counts, a network without a chain)."""

    def __init__(
        self,
        roots_domain: TypedDomain,
        credits_domain: TypedDomain,
        members: frozenset[bytes] | None = None,
    ) -> None:
        self.domains = {SettlementSignature: roots_domain, CreditDebitSignature: credits_domain}
        self.members = members
        self._book: OrderedDict[bytes, dict[bytes, bytes]] = OrderedDict()
        self.validate = signed_message_validator(
            (SettlementSignature, CreditDebitSignature), authorise=self._authorise, on_accept=self._accept
        )

    def set_members(self, members: frozenset[bytes] | None) -> None:
        self.members = members

    def _authorise(self, signed: envelope.Signed) -> bool | Verdict:
        message = signed.message
        signer = eth_signer(message, self.domains[type(message)])  # SignatureError: rejected
        if self.members is not None and signer not in self.members:
            return Verdict.IGNORE
        digest = signed_digest(message, self.domains[type(message)])
        if digest not in self._book and len(self._book) >= MAX_DIGESTS:
            return Verdict.IGNORE
        return True

    def _accept(self, signed: envelope.Signed) -> None:
        self.add(signed.message)

    def add(self, message: SettlementSignature | CreditDebitSignature) -> bytes:
        """File a signature (already checked, or our own); returns the digest it signs."""
        digest = signed_digest(message, self.domains[type(message)])
        self._book.setdefault(digest, {})[message.validator] = message.signature
        self._book.move_to_end(digest)
        while len(self._book) > MAX_DIGESTS:
            self._book.popitem(last=False)
        return digest

    def signatures(self, digest: bytes) -> dict[bytes, bytes]:
        """Signer -> signature, for the message whose EIP-712 digest is `digest`."""
        return dict(self._book.get(digest, {}))
