"""Ethereum addresses as people and files write them: `checked_address`, this package's one check of them
(command arguments, reward trees, election and settlement inputs)."""

from __future__ import annotations

import re

from chain.errors import AddressError
from protocols.eth import to_checksum_address

__all__ = ["checked_address"]

_ADDRESS_TEXT = re.compile(r"0x[0-9a-fA-F]{40}")


def checked_address(text: str) -> str:
    """`text` as an EIP-55 checksummed address; raises AddressError for anything else.

    "0x" and 40 hex digits, nothing around them. All-lowercase and all-uppercase digits are accepted; mixed
    case must carry a valid EIP-55 checksum, since a wrong one usually means a mistyped address.
    """
    if not isinstance(text, str) or _ADDRESS_TEXT.fullmatch(text) is None:
        raise AddressError(f"not an Ethereum address (0x and 40 hex digits): {text!r}")
    checksummed = to_checksum_address(bytes.fromhex(text[2:]))
    digits = text[2:]
    if digits != digits.lower() and digits != digits.upper() and text != checksummed:
        raise AddressError(f"address {text} has a wrong EIP-55 checksum (did you mean {checksummed}?)")
    return checksummed
