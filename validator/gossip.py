"""Validators of the validator topics: only validators strike and sign decisions, bans need several, and a
user report must be the reporter's own answer.

- A strike report travels in an envelope signed by the peer that published it (the striking validator's,
  or another validator's republishing it for those that missed it), and carries the striking validator
  wallet's EIP-712 signature; the wallet must be a current validator (`is_validator`), else the
  report is rejected and its forwarder scored down. Whether its evidence shows a failure is checked after
  acceptance, by re-running the checks (`Validator.on_strike`): that takes a model, not a gossip callback.
- A ban notice must carry strike reports about the banned node signed by at least `min_strikes` distinct
  current validators; one validator cannot ban a node alone. (`ban_validator` lives in `pool.bans`, since
  routers honour the ban list too.)
- A strike decision signature (DECISIONS_TOPIC) must be by a current validator.
- A user report (REPORTS_TOPIC) must carry a countersigned receipt of the named node's answer to the
  named request, countersigned by the session key that signed the report (`strikes.check_user_report`).
"""

from __future__ import annotations

from p2p import Validator
from p2p.validators import signed_message_validator
from pool.bans import IsValidator, ban_validator
from protocols import envelope
from protocols.eth import TypedDomain
from protocols.messages import StrikeDecisionSignature, StrikeReport, UserReport, eth_signer
from validator.errors import EvidenceError
from validator.strikes import check_user_report

__all__ = [
    "IsValidator",
    "ban_validator",
    "decision_validator",
    "strike_validator",
    "user_report_validator",
]


def strike_validator(domain: TypedDomain, is_validator: IsValidator) -> Validator:
    """The validator of STRIKES_TOPIC; `domain` is the EIP-712 domain strike reports are signed under."""

    def authorise(signed: envelope.Signed[StrikeReport]) -> bool:
        return is_validator(eth_signer(signed.message, domain)) and bool(signed.message.evidence)

    return signed_message_validator(StrikeReport, authorise=authorise)


def decision_validator(domain: TypedDomain, is_validator: IsValidator) -> Validator:
    """The validator of DECISIONS_TOPIC; `domain` is the Slashing contract's."""

    def authorise(signed: envelope.Signed[StrikeDecisionSignature]) -> bool:
        return is_validator(eth_signer(signed.message, domain))

    return signed_message_validator(StrikeDecisionSignature, authorise=authorise)


def user_report_validator() -> Validator:
    """The validator of REPORTS_TOPIC."""

    def authorise(signed: envelope.Signed[UserReport]) -> bool:
        try:
            check_user_report(signed)
        except EvidenceError:
            return False
        return True

    return signed_message_validator(UserReport, authorise=authorise)
