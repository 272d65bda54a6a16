"""chain.address.checked_address: the one check of an address someone wrote, for commands, reward trees,
the election and the settlement alike."""

import pytest

from chain.address import checked_address
from chain.client import ValidatorSet
from chain.errors import AddressError

pytestmark = pytest.mark.unit

EIP55_EXAMPLE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # from EIP-55 itself


@pytest.mark.parametrize("text", [EIP55_EXAMPLE, EIP55_EXAMPLE.lower(), "0x" + EIP55_EXAMPLE[2:].upper()])
def test_one_case_or_a_right_checksum_is_the_checksummed_address(text):
    assert checked_address(text) == EIP55_EXAMPLE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # What chain.client's check (eth_utils.is_address) let through before: a wrong EIP-55 checksum in
        # mixed case, no "0x", or "0X".
        (EIP55_EXAMPLE[:-1] + "D", "wrong EIP-55 checksum .*did you mean " + EIP55_EXAMPLE),
        (EIP55_EXAMPLE[2:], "not an Ethereum address"),
        ("0X" + EIP55_EXAMPLE[2:], "not an Ethereum address"),
        (" " + EIP55_EXAMPLE, "not an Ethereum address"),
        (EIP55_EXAMPLE + "00", "not an Ethereum address"),
        ("0x1234", "not an Ethereum address"),
        (bytes(20), "not an Ethereum address"),
    ],
)
def test_anything_else_is_refused_with_what_is_wrong(text, message):
    with pytest.raises(AddressError, match=message):
        checked_address(text)


def test_a_validator_set_named_with_a_mistyped_address_is_refused():
    with pytest.raises(AddressError, match="checksum"):
        ValidatorSet.of({EIP55_EXAMPLE[:-1] + "D": 1})
