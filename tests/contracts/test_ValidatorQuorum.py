"""ValidatorQuorum: sorted distinct signers, weights from Bonding, ECDSA edge cases, the bounded quorum."""

import brownie
from eth_account import Account
from eth_utils import keccak

from tests.contracts.conftest import SHARE_UNIT

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DIGEST = keccak(b"any EIP-712 digest a caller built")


def sign(wallet, digest=DIGEST):
    return bytes(Account.unsafe_sign_hash(digest, wallet.private_key).signature)


def signatures(wallets, digest=DIGEST):
    return [sign(wallet, digest) for wallet in wallets]


# The `validators` fixture bonds 1, 2, 3 and 4 x 100k POD in address order: weights 1:2:3:4 of 10.
WEIGHT = 100_000 * SHARE_UNIT


def test_quorum_of_two_thirds_passes_and_returns_the_signed_weight(validator_quorum, validators):
    assert validator_quorum.requiredWeight() == -(-10 * WEIGHT * 6_667 // 10_000)
    # 2 + 3 + 4 = 9 of 10
    assert validator_quorum.checkQuorum(DIGEST, signatures(validators[1:])) == 9 * WEIGHT
    # 3 + 4 = 7 of 10 is still above two thirds
    assert validator_quorum.checkQuorum(DIGEST, signatures(validators[2:])) == 7 * WEIGHT


def test_short_of_quorum_reverts(validator_quorum, validators):
    # 1 + 2 + 3 = 6 of 10
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures(validators[:3]))
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, [])


def test_unsorted_or_repeated_signers_revert(validator_quorum, validators):
    with brownie.reverts(revert_pattern=r"ValidatorQuorumSignersNotAscending: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures([validators[3], validators[2], validators[1]]))
    # Counting the heaviest validator three times would reach quorum if duplicates were allowed.
    with brownie.reverts(revert_pattern=r"ValidatorQuorumSignersNotAscending: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures([validators[3]] * 3))


def test_a_signature_over_another_digest_counts_as_a_stranger(validator_quorum, validators):
    forged = [*signatures(validators[1:3]), sign(validators[3], keccak(b"another message"))]
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotValidator|SignersNotAscending): .*"):
        validator_quorum.checkQuorum(DIGEST, forged)


def test_non_validator_signer_reverts(validator_quorum, validators, bonding):
    bonding.leaveValidators({"from": validators[0]})
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotValidator: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures(validators))


def test_malformed_and_malleable_signatures_revert(validator_quorum, validators):
    good = sign(validators[3])
    with brownie.reverts(revert_pattern=r"ECDSAInvalidSignatureLength: .*"):
        validator_quorum.checkQuorum(DIGEST, [good[:64]])
    s = int.from_bytes(good[32:64], "big")
    flipped = good[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]])  # v: 27 <-> 28
    with brownie.reverts(revert_pattern=r"ECDSAInvalidSignatureS: .*"):
        validator_quorum.checkQuorum(DIGEST, [flipped])


def test_no_validators_means_no_quorum(validator_quorum, validators, bonding):
    for validator in validators:
        bonding.leaveValidators({"from": validator})
    with brownie.reverts("ValidatorQuorumNoValidators: "):
        validator_quorum.checkQuorum(DIGEST, signatures(validators))
    with brownie.reverts("ValidatorQuorumNoValidators: "):
        validator_quorum.requiredWeight()


def test_quorum_bps_is_bounded_and_governed(ValidatorQuorum, validator_quorum, bonding, deployer, accounts):
    for bad in (5_000, 10_001):
        with brownie.reverts(revert_pattern=r"ValidatorQuorumParameterOutOfBounds: .*"):
            ValidatorQuorum.deploy(bonding, deployer, bad, {"from": deployer})
        with brownie.reverts(revert_pattern=r"ValidatorQuorumParameterOutOfBounds: .*"):
            validator_quorum.setQuorumBps(bad, {"from": deployer})
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        validator_quorum.setQuorumBps(9_000, {"from": accounts[6]})
    tx = validator_quorum.setQuorumBps(10_000, {"from": deployer})
    assert tx.events["QuorumBpsSet"]["quorumBps"] == 10_000
    assert validator_quorum.quorumBps() == 10_000
    assert validator_quorum.bonding() == bonding


def test_unanimity_needs_every_validator(validator_quorum, validators, deployer):
    validator_quorum.setQuorumBps(10_000, {"from": deployer})
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures(validators[1:]))
    assert validator_quorum.checkQuorum(DIGEST, signatures(validators)) == 10 * WEIGHT
