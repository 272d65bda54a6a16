"""Errors of the chain package: one base, `ChainError`, that every decoder and check here raises."""


class ChainError(Exception):
    """Base of every error raised by the chain package."""


class RewardsInputError(ChainError):
    """A reward-engine input or exchange document is malformed; the message names the account and field."""


class RewardsParamsError(RewardsInputError):
    """A reward parameter is unknown, of the wrong type or outside its bounds."""


class AddressError(ChainError):
    """Text that is not an Ethereum address, or a mixed-case one with a wrong EIP-55 checksum."""


class MerkleError(ChainError):
    """A rewards Merkle tree input, proof or serialised tree is malformed."""
