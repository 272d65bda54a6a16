"""Validators of the strike and ban topics: only validators strike, and a ban must carry enough strikes.

- A strike report travels in an envelope signed by the reporting validator's peer key, and carries the
  validator wallet's EIP-712 signature; the wallet must be a current validator (`is_validator`, read from
  Bonding by the caller), else the report is rejected and its forwarder scored down.
- A ban notice must carry strike reports about the banned node signed by at least `min_strikes` distinct
  current validators; one validator cannot ban a node alone. (`ban_validator` lives in `pool.bans`, since
  routers honour the ban list too.)
"""

from __future__ import annotations

from p2p import Validator
from p2p.validators import signed_message_validator
from pool.bans import IsValidator, ban_validator
from protocols import envelope
from protocols.eth import TypedDomain
from protocols.messages import StrikeReport, eth_signer

__all__ = ["IsValidator", "ban_validator", "strike_validator"]


def strike_validator(domain: TypedDomain, is_validator: IsValidator) -> Validator:
    """The validator of STRIKES_TOPIC; `domain` is the EIP-712 domain strike reports are signed under."""

    def authorise(signed: envelope.Signed[StrikeReport]) -> bool:
        return is_validator(eth_signer(signed.message, domain))

    return signed_message_validator(StrikeReport, authorise=authorise)
