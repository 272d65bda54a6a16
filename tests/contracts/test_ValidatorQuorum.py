"""ValidatorQuorum: the elected set (genesis, installation checks), the 2/3 rule, sorted distinct signers,
strangers skipped, the judged member left out, ECDSA edge cases, opting in and the bounded quorum."""

import itertools

import brownie
import pytest
from eth_account import Account
from eth_utils import keccak

from chain.quorum import QuorumRule, quorum_order
from tests.contracts.conftest import (
    MIN_VALIDATOR_BOND,
    POD_UNIT,
    SHARE_UNIT,
    bond_pod,
    current_set,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DIGEST = keccak(b"any EIP-712 digest a caller built")
# The `validators` fixture bonds 1, 2, 3 and 4 x 100k POD in address order: weights 1:2:3:4 of 10.
WEIGHT = 100_000 * SHARE_UNIT


def sign(wallet, digest=DIGEST):
    return bytes(Account.unsafe_sign_hash(digest, wallet.private_key).signature)


def signatures(wallets, digest=DIGEST):
    return [sign(wallet, digest) for wallet in sorted(wallets, key=lambda w: int(w.address, 16))]


@pytest.fixture
def installer(accounts, validator_quorum, deployer):
    """An account bound as the installer (the RewardsDistributor's part), to install sets directly. Bound
    in each test's own isolation: a binding kept for the module broke the tests of an unbound quorum that
    came after (its genesis set, the one-time binding)."""
    validator_quorum.bindInstaller(accounts[7], {"from": deployer})
    return accounts[7]


@pytest.fixture(scope="module")
def trio(ValidatorQuorum, bonding, quorum_params, validator_wallets, deployer):
    """A quorum of three equal genesis members, the launch shape."""
    members = validator_wallets[:3]
    return ValidatorQuorum.deploy(
        bonding, quorum_params, deployer, 2, 3, members, [1, 1, 1], {"from": deployer}
    ), members


def newcomer(pod, stkpod, bonding, validator_quorum, treasury, account, amount):
    """`account` bonds `amount` POD and opts in."""
    shares = bond_pod(pod, stkpod, bonding, treasury, account, amount)
    validator_quorum.joinValidators({"from": account})
    return shares


# ---------------------------------------------------------------- the quorum rule


def test_two_of_three_equal_validators_are_a_quorum(trio):
    """Medium finding: with 6,667 bps rounded up, 2w < 2.0001w needed all three."""
    quorum, members = trio
    assert tuple(quorum.quorum()) == (2, 3)
    assert quorum.requiredWeight() == 2
    for pair in ((0, 1), (0, 2), (1, 2)):
        assert quorum.checkQuorum(DIGEST, signatures([members[i] for i in pair])) == 2
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        quorum.checkQuorum(DIGEST, signatures(members[:1]))


def test_weighted_quorum_of_two_thirds(validator_quorum, validators):
    assert validator_quorum.requiredWeight() == -(-10 * WEIGHT * 2 // 3)
    assert validator_quorum.checkQuorum(DIGEST, signatures(validators[1:])) == 9 * WEIGHT  # 2+3+4 of 10
    assert validator_quorum.checkQuorum(DIGEST, signatures(validators[2:])) == 7 * WEIGHT  # 3+4 of 10
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures(validators[:3]))  # 1+2+3 = 6 of 10
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, [])


def test_unsorted_or_repeated_signers_revert(validator_quorum, validators):
    unsorted = [sign(validators[3]), sign(validators[2]), sign(validators[1])]
    with brownie.reverts(revert_pattern=r"ValidatorQuorumSignersNotAscending: .*"):
        validator_quorum.checkQuorum(DIGEST, unsorted)
    # Counting the heaviest validator three times would reach quorum if duplicates were allowed.
    with brownie.reverts(revert_pattern=r"ValidatorQuorumSignersNotAscending: .*"):
        validator_quorum.checkQuorum(DIGEST, [sign(validators[3])] * 3)


def test_a_signer_outside_the_set_is_skipped_not_fatal(validator_quorum, validators, accounts):
    """Low finding: a signature of someone no longer (or never) in the set used to revert the bundle."""
    stranger = Account.create()
    by_signer = {v.address: sign(v) for v in validators[1:]}
    by_signer[stranger.address] = bytes(Account.unsafe_sign_hash(DIGEST, stranger.key).signature)
    mixed = [by_signer[a] for a in sorted(by_signer, key=lambda a: int(a, 16))]
    assert validator_quorum.checkQuorum(DIGEST, mixed) == 9 * WEIGHT
    # A signature over another digest recovers to some stranger: it adds nothing.
    forged = [*signatures(validators[2:]), sign(validators[1], keccak(b"another message"))]
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotReached|SignersNotAscending): .*"):
        validator_quorum.checkQuorum(DIGEST, forged)


def test_malformed_and_malleable_signatures_revert(validator_quorum, validators):
    good = sign(validators[3])
    with brownie.reverts(revert_pattern=r"ECDSAInvalidSignatureLength: .*"):
        validator_quorum.checkQuorum(DIGEST, [good[:64]])
    s = int.from_bytes(good[32:64], "big")
    flipped = good[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]])  # v: 27 <-> 28
    with brownie.reverts(revert_pattern=r"ECDSAInvalidSignatureS: .*"):
        validator_quorum.checkQuorum(DIGEST, [flipped])


def test_the_judged_member_counts_in_neither_the_total_nor_the_signers(validator_quorum, validators):
    """Medium finding: the offender's own weight was in the total, so a third of the weight was a veto."""
    heaviest = validators[3]  # 4 of 10: enough to block a 2/3 decision that counts it
    others = validators[:3]  # 1 + 2 + 3 = 6 of the remaining 6
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures(others))
    assert validator_quorum.checkQuorumExcluding(DIGEST, signatures(others), heaviest) == 6 * WEIGHT
    # Its own signature adds nothing to a decision about it: 4 (excluded) + 1 of 6 is short.
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorumExcluding(DIGEST, signatures([validators[0], heaviest]), heaviest)
    # Excluding an outsider changes nothing.
    assert validator_quorum.checkQuorumExcluding(
        DIGEST, signatures(validators[2:]), brownie.ZERO_ADDRESS
    ) == (7 * WEIGHT)


def test_the_validators_own_quorum_rule_agrees_with_the_contract(validator_quorum, validators):
    """chain.quorum.QuorumRule (what validator daemons relay and slash by) says "a quorum" exactly where
    checkQuorum and checkQuorumExcluding accept, for every subset of signers of the 1:2:3:4 set, and puts
    the signatures in the order the contract requires."""
    members, weights = current_set(validator_quorum)
    rule = QuorumRule(
        {bytes.fromhex(m[2:]): w for m, w in zip(members, weights, strict=True)}, *validator_quorum.quorum()
    )
    by_signer = {bytes.fromhex(v.address[2:]): sign(v) for v in validators}
    for size in range(len(validators) + 1):
        for signers in itertools.combinations(by_signer, size):
            signed = {signer: by_signer[signer] for signer in signers}
            for excluded in (None, *by_signer):
                ordered = rule.quorum_signatures(signed, excluded=excluded)
                judged = "0x" + (excluded or bytes(20)).hex()
                if ordered is None:
                    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
                        validator_quorum.checkQuorumExcluding(DIGEST, quorum_order(signed), judged)
                else:
                    validator_quorum.checkQuorumExcluding(DIGEST, ordered, judged)


def test_a_lone_member_cannot_be_judged_by_nobody(ValidatorQuorum, bonding, quorum_params, validator_wallets,
                                                  deployer):  # fmt: skip
    alone = ValidatorQuorum.deploy(
        bonding, quorum_params, deployer, 2, 3, validator_wallets[:1], [5], {"from": deployer}
    )
    with brownie.reverts("ValidatorQuorumNoValidators: "):
        alone.checkQuorumExcluding(DIGEST, [], validator_wallets[0])


# ---------------------------------------------------------------- the set changes only by election


def test_a_newcomer_bonding_a_fortune_cannot_sign_alone(
    pod, stkpod, bonding, validator_quorum, validators, treasury, accounts
):
    """High finding: an account that bonded and joined counted at once and could sign alone."""
    whale = accounts[5]
    newcomer(pod, stkpod, bonding, validator_quorum, treasury, whale, 10_000_000 * POD_UNIT)
    assert validator_quorum.hasJoined(whale) and not validator_quorum.isValidator(whale)
    assert validator_quorum.totalWeight() == 10 * WEIGHT
    whale_key = Account.create()
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(
            DIGEST, [bytes(Account.unsafe_sign_hash(DIGEST, whale_key.key).signature)]
        )
    # Nor does bonding more move a member's weight before the next election.
    bond_pod(pod, stkpod, bonding, treasury, validators[0], 5_000_000 * POD_UNIT)
    assert validator_quorum.weightOf(validators[0]) == WEIGHT


def test_genesis_set_is_the_deployments_and_epoch_zero(validator_quorum, validator_wallets):
    members, weights = current_set(validator_quorum)
    assert members == [w.address for w in validator_wallets]
    assert weights == [WEIGHT, 2 * WEIGHT, 3 * WEIGHT, 4 * WEIGHT]
    assert validator_quorum.validatorSetEpoch() == 0
    assert validator_quorum.totalWeight() == 10 * WEIGHT
    assert validator_quorum.installer() == brownie.ZERO_ADDRESS


@pytest.mark.parametrize(
    ("shape", "error"),
    [
        ("empty", "ValidatorQuorumInvalidSetSize"),
        ("lengths", "ValidatorQuorumInvalidSetSize"),
        ("unsorted", "ValidatorQuorumSetNotAscending"),
        ("repeated", "ValidatorQuorumSetNotAscending"),
        ("zero_weight", "ValidatorQuorumZeroWeight"),
        ("too_many", "ValidatorQuorumInvalidSetSize"),
    ],
)
def test_a_malformed_set_is_refused(ValidatorQuorum, validator_quorum, bonding, quorum_params,
                                    validator_wallets, deployer, shape, error):  # fmt: skip
    a, b = validator_wallets[0].address, validator_wallets[1].address
    members, weights = {
        "empty": ([], []),
        "lengths": ([a, b], [1]),
        "unsorted": ([b, a], [1, 1]),
        "repeated": ([a, a], [1, 1]),
        "zero_weight": ([a, b], [1, 0]),
        "too_many": ([f"0x{i:040x}" for i in range(1, 102)], [1] * 101),
    }[shape]
    with brownie.reverts(revert_pattern=rf"{error}: .*"):
        ValidatorQuorum.deploy(bonding, quorum_params, deployer, 2, 3, members, weights, {"from": deployer})
    # What a root proposes as the next set meets the same check.
    with brownie.reverts(revert_pattern=rf"{error}: .*"):
        validator_quorum.checkValidatorSet(members, weights)
    validator_quorum.checkValidatorSet([a, b], [1, 2])


def test_the_installer_is_bound_once_by_the_deployer(validator_quorum, deployer, accounts):
    with brownie.reverts(revert_pattern=r"ValidatorQuorumInstallerNotBindable: .*"):
        validator_quorum.bindInstaller(accounts[7], {"from": accounts[7]})
    tx = validator_quorum.bindInstaller(accounts[7], {"from": deployer})
    assert tx.events["InstallerBound"]["installer"] == accounts[7]
    with brownie.reverts(revert_pattern=r"ValidatorQuorumInstallerNotBindable: .*"):
        validator_quorum.bindInstaller(accounts[8], {"from": deployer})
    # Not even the admin (the timelock, after deployment) can install a set.
    with brownie.reverts(revert_pattern=r"ValidatorQuorumUnauthorizedInstaller: .*"):
        validator_quorum.installValidatorSet(1, *current_set(validator_quorum), {"from": deployer})


def test_installing_replaces_the_set_with_weights_capped_by_bonds(
    pod, stkpod, bonding, validator_quorum, validators, installer, treasury, accounts
):
    alice = accounts[5]
    alice_shares = newcomer(pod, stkpod, bonding, validator_quorum, treasury, alice, 2 * MIN_VALIDATOR_BOND)
    keep = validators[2]
    members = sorted([alice.address, keep.address], key=lambda a: int(a, 16))
    asked = {alice.address: 10 * alice_shares, keep.address: WEIGHT}  # alice asks ten times her bond
    tx = validator_quorum.installValidatorSet(7, members, [asked[m] for m in members], {"from": installer})
    assert tx.events["ValidatorSetInstalled"]["epoch"] == 7
    assert validator_quorum.validatorSetEpoch() == 7
    assert validator_quorum.weightOf(alice) == alice_shares  # capped at her active bond
    assert validator_quorum.weightOf(keep) == WEIGHT
    assert validator_quorum.totalWeight() == alice_shares + WEIGHT
    for gone in (validators[0], validators[1], validators[3]):
        assert not validator_quorum.isValidator(gone)
    # The old members' signatures now add nothing.
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures([validators[0], validators[1], validators[3]]))


def _signing_accounts(accounts, deployer, count):
    """Accounts with known keys (brownie's unlocked ones cannot sign a raw digest)."""
    wallets = []
    for i in range(count):
        wallet = accounts.add("0x" + bytes([0xB0 + i] * 32).hex())
        deployer.transfer(wallet, 10**18)
        wallets.append(wallet)
    return wallets


def test_a_set_that_took_over_waits_before_it_can_debit_or_slash(
    Credits,
    stablecoin,
    pod,
    stkpod,
    bonding,
    validator_quorum,
    validators,
    installer,
    treasury,
    accounts,
    deployer,
):
    """Attack: a new set replaces every incumbent and at once signs debits. Its new weight counts for
    debits and slashes only after SET_CHANGE_WAIT; roots (the installer's check) are not held up."""
    credits = Credits.deploy(
        stablecoin, validator_quorum, accounts[9], 86400, 1, deployer, {"from": deployer}
    )
    victim = accounts[8]
    stablecoin.mint(victim, 100, {"from": victim})
    stablecoin.approve(credits, 100, {"from": victim})
    credits.deposit(100, {"from": victim})
    takers = _signing_accounts(accounts, deployer, 2)
    for taker in takers:
        newcomer(pod, stkpod, bonding, validator_quorum, treasury, taker, MIN_VALIDATOR_BOND)
    takers.sort(key=lambda t: int(t.address, 16))
    members = [t.address for t in takers]
    validator_quorum.installValidatorSet(9, members, [WEIGHT, WEIGHT], {"from": installer})
    assert [validator_quorum.heldWeightOf(t) for t in takers] == [0, 0]
    deadline = brownie.chain[-1].timestamp + 3600
    digest = credits.debitBatchDigest(1, [victim.address], [100], deadline)
    taken = signatures(takers, digest)
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        credits.settleDebits(1, [victim.address], [100], deadline, taken, {"from": accounts[0]})
    assert validator_quorum.checkQuorum(digest, taken, {"from": installer}) == 2 * WEIGHT
    brownie.chain.sleep(validator_quorum.SET_CHANGE_WAIT())
    brownie.chain.mine()
    assert validator_quorum.waitEndsAt() <= brownie.chain[-1].timestamp
    deadline = brownie.chain[-1].timestamp + 3600
    digest = credits.debitBatchDigest(1, [victim.address], [100], deadline)
    credits.settleDebits(
        1, [victim.address], [100], deadline, signatures(takers, digest), {"from": accounts[0]}
    )
    assert credits.creditOf(victim) == 0


def test_incumbents_keep_their_weight_through_a_change(
    pod, stkpod, bonding, validator_quorum, validators, installer, treasury, accounts, deployer
):
    """Weight a member held before counts at once; a newcomer's waits. The incumbents keep settling."""
    (alice,) = _signing_accounts(accounts, deployer, 1)
    newcomer(pod, stkpod, bonding, validator_quorum, treasury, alice, MIN_VALIDATOR_BOND)
    members, weights = current_set(validator_quorum)
    weights = dict(zip(members, weights, strict=True))
    weights[validators[3].address] = 2 * WEIGHT  # shrinks
    weights[alice.address] = WEIGHT
    ordered = sorted(weights, key=lambda a: int(a, 16))
    validator_quorum.installValidatorSet(4, ordered, [weights[m] for m in ordered], {"from": installer})
    held = [validator_quorum.heldWeightOf(v) for v in [*validators, alice]]
    assert held == [WEIGHT, 2 * WEIGHT, 3 * WEIGHT, 2 * WEIGHT, 0]
    assert validator_quorum.checkQuorum(DIGEST, signatures(validators[1:])) == 7 * WEIGHT  # of 9: a quorum
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures([validators[3], alice]))


def test_installing_drops_who_did_not_join_or_holds_too_little(
    pod, stkpod, bonding, validator_quorum, validators, installer, treasury, accounts
):
    stranger, small = accounts[5], accounts[6]
    bond_pod(pod, stkpod, bonding, treasury, stranger, 5 * MIN_VALIDATOR_BOND)  # bonded, never joined
    newcomer(pod, stkpod, bonding, validator_quorum, treasury, small, MIN_VALIDATOR_BOND)
    bonding.requestUnbond(SHARE_UNIT, {"from": small})  # now a POD short of the minimum
    members = sorted([stranger.address, small.address, validators[3].address], key=lambda a: int(a, 16))
    tx = validator_quorum.installValidatorSet(3, members, [WEIGHT] * 3, {"from": installer})
    dropped = {event["member"] for event in tx.events["ValidatorDropped"]}
    assert dropped == {stranger.address, small.address}
    assert current_set(validator_quorum) == ([validators[3].address], [WEIGHT])


def test_installing_nobody_eligible_reverts_and_keeps_the_set(
    pod, stkpod, bonding, validator_quorum, validators, installer, treasury, accounts
):
    stranger = accounts[5]
    bond_pod(pod, stkpod, bonding, treasury, stranger, 5 * MIN_VALIDATOR_BOND)
    before = current_set(validator_quorum)
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNoEligibleMember: .*"):
        validator_quorum.installValidatorSet(1, [stranger.address], [WEIGHT], {"from": installer})
    assert current_set(validator_quorum) == before


def test_the_minimum_comes_from_the_parameter_registry(
    pod, stkpod, bonding, validator_quorum, quorum_params, validators, installer, treasury, accounts, deployer
):
    """Low finding: the 100k minimum had two homes with different bounds; now only the registry has it."""
    assert (
        validator_quorum.minValidatorBond()
        == MIN_VALIDATOR_BOND
        == quorum_params.valueOf("validator_min_bond")
    )
    assert validator_quorum.params() == quorum_params
    quorum_params.setParam("validator_min_bond", 250_000 * POD_UNIT, {"from": deployer})
    assert validator_quorum.minValidatorBond() == 250_000 * POD_UNIT
    # validators[1] holds 200k: dropped at the next installation; validators[2] (300k) stays.
    members = [validators[1].address, validators[2].address]
    validator_quorum.installValidatorSet(2, members, [2 * WEIGHT, 3 * WEIGHT], {"from": installer})
    assert current_set(validator_quorum) == ([validators[2].address], [3 * WEIGHT])
    with brownie.reverts(revert_pattern=r"ValidatorQuorumBelowMinimumBond: .*"):
        newcomer(pod, stkpod, bonding, validator_quorum, treasury, accounts[5], 200_000 * POD_UNIT)


# ---------------------------------------------------------------- opting in


def test_join_needs_the_minimum_and_leave_stays_until_the_next_set(
    pod, stkpod, bonding, validator_quorum, validators, treasury, accounts
):
    alice = accounts[5]
    bond_pod(pod, stkpod, bonding, treasury, alice, MIN_VALIDATOR_BOND - POD_UNIT)
    with brownie.reverts(revert_pattern=r"ValidatorQuorumBelowMinimumBond: .*"):
        validator_quorum.joinValidators({"from": alice})
    bond_pod(pod, stkpod, bonding, treasury, alice, POD_UNIT)
    tx = validator_quorum.joinValidators({"from": alice})
    assert tx.events["ValidatorMembershipChanged"]["joined"] is True
    with brownie.reverts(revert_pattern=r"ValidatorQuorumMembershipUnchanged: .*"):
        validator_quorum.joinValidators({"from": alice})

    validator_quorum.leaveValidators({"from": validators[0]})
    assert not validator_quorum.hasJoined(validators[0])
    assert validator_quorum.weightOf(validators[0]) == WEIGHT  # a set changes only by installation
    with brownie.reverts(revert_pattern=r"ValidatorQuorumMembershipUnchanged: .*"):
        validator_quorum.leaveValidators({"from": validators[0]})


# ---------------------------------------------------------------- governance


def test_quorum_is_bounded_and_governed(ValidatorQuorum, validator_quorum, bonding, quorum_params,
                                        validator_wallets, deployer, accounts):  # fmt: skip
    for numerator, denominator in ((1, 2), (3, 2), (0, 0), (10_001, 10_001)):
        with brownie.reverts(revert_pattern=r"ValidatorQuorumInvalidQuorum: .*"):
            ValidatorQuorum.deploy(
                bonding, quorum_params, deployer, numerator, denominator, validator_wallets[:1], [1],
                {"from": deployer},
            )  # fmt: skip
        with brownie.reverts(revert_pattern=r"ValidatorQuorumInvalidQuorum: .*"):
            validator_quorum.setQuorum(numerator, denominator, {"from": deployer})
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        validator_quorum.setQuorum(3, 4, {"from": accounts[6]})
    tx = validator_quorum.setQuorum(1, 1, {"from": deployer})
    assert (tx.events["QuorumSet"]["numerator"], tx.events["QuorumSet"]["denominator"]) == (1, 1)
    assert tuple(validator_quorum.quorum()) == (1, 1)
    assert validator_quorum.bonding() == bonding


def test_unanimity_needs_every_validator(validator_quorum, validators, deployer):
    validator_quorum.setQuorum(1, 1, {"from": deployer})
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        validator_quorum.checkQuorum(DIGEST, signatures(validators[1:]))
    assert validator_quorum.checkQuorum(DIGEST, signatures(validators)) == 10 * WEIGHT
