"""Slashing: quorum-signed StrikeDecisions (the offender's weight left out) slash active and thawing bond, pay
the reporter, burn the rest; evidence is spent per offender and signatures expire within a week."""

import brownie
from brownie import chain
from eth_account import Account
from eth_utils import keccak

from pool.bans import DEFAULT_SEVERITIES
from protocols import eth
from protocols.messages import STRIKE_REASONS
from tests.contracts.conftest import POD_UNIT, STRIKE_DECISION_FIELDS, bond_pod, sign_typed

EVIDENCE = keccak(b"strike evidence: wrong model served")


def decision(offender, reporter, slash_bps=5_000, evidence=EVIDENCE, deadline=None):
    return {
        "offender": str(offender),
        "evidenceHash": evidence,
        "slashBps": slash_bps,
        "reporter": str(reporter),
        "deadline": chain[-1].timestamp + 3600 if deadline is None else deadline,
    }


def as_tuple(message):
    return tuple(message[field["name"]] for field in STRIKE_DECISION_FIELDS)


def signed_by(slashing, signers, message):
    return [
        sign_typed(signer.private_key, slashing.address, "StrikeDecision", STRIKE_DECISION_FIELDS, message)
        for signer in signers
    ]


def offender_with_bond(pod, stkpod, bonding, treasury, account, amount=1_000 * POD_UNIT):
    return bond_pod(pod, stkpod, bonding, treasury, account, amount)


def test_type_hash_and_digest_match_the_cross_part_type_string(slashing, validators, accounts):
    type_string = (
        b"StrikeDecision(address offender,bytes32 evidenceHash,uint256 slashBps,"
        b"address reporter,uint256 deadline)"
    )
    assert slashing.STRIKE_DECISION_TYPEHASH() == "0x" + keccak(type_string).hex()
    message = decision(accounts[3], accounts[4])
    # eth_account's typed-data signature equals a raw signature of the contract's digest (RFC 6979 is
    # deterministic), so both sides hash the same bytes.
    signature = signed_by(slashing, validators[:1], message)[0]
    digest = bytes(slashing.hashStrikeDecision(as_tuple(message)))
    assert bytes(Account.unsafe_sign_hash(digest, validators[0].private_key).signature) == signature


def test_quorum_signed_decision_slashes_pays_reporter_and_burns(
    pod, stkpod, bonding, slashing, treasury, validators, accounts
):
    offender, reporter = accounts[3], accounts[4]
    shares = offender_with_bond(pod, stkpod, bonding, treasury, offender)
    supply_before = pod.totalSupply()
    message = decision(offender, reporter, slash_bps=5_000)
    tx = slashing.slash(
        as_tuple(message), signed_by(slashing, validators[1:], message), {"from": accounts[9]}
    )

    slashed = shares // 2
    assert tx.return_value == slashed
    event = tx.events["StrikeExecuted"]
    assert event["shares"] == slashed and event["reporterShares"] == slashed // 10
    bonded_event = tx.events["Slashed"]
    assert bonded_event["reporterShares"] + bonded_event["removedShares"] == slashed
    assert stkpod.balanceOf(reporter) == slashed // 10
    assert bonding.slashableOf(offender) == shares - slashed
    burned = supply_before - pod.totalSupply()
    assert burned == 450 * POD_UNIT
    assert slashing.isEvidenceUsed(offender, EVIDENCE)


def test_slash_reaches_thawing_bond(pod, stkpod, bonding, slashing, treasury, validators, accounts, deployer):
    offender = accounts[3]
    shares = offender_with_bond(pod, stkpod, bonding, treasury, offender)
    request = bonding.requestUnbond(shares * 3 // 4, {"from": offender}).return_value
    slashing.setMaxSlashBps(10_000, {"from": deployer})
    message = decision(offender, accounts[4], slash_bps=10_000)
    slashing.slash(as_tuple(message), signed_by(slashing, validators[1:], message), {"from": accounts[9]})
    assert bonding.slashableOf(offender) == 0
    assert bonding.unbondRequest(request)[2] == 0


def test_no_reporter_means_everything_is_burned(
    pod, stkpod, bonding, slashing, treasury, validators, accounts
):
    offender = accounts[3]
    shares = offender_with_bond(pod, stkpod, bonding, treasury, offender)
    supply_before = pod.totalSupply()
    message = decision(offender, brownie.ZERO_ADDRESS, slash_bps=1_000)
    tx = slashing.slash(
        as_tuple(message), signed_by(slashing, validators[1:], message), {"from": accounts[9]}
    )
    assert tx.events["StrikeExecuted"]["reporterShares"] == 0
    assert supply_before - pod.totalSupply() == stkpod.convertToAssets(shares // 10) == 100 * POD_UNIT


def test_same_evidence_cannot_be_slashed_twice(
    pod, stkpod, bonding, slashing, treasury, validators, accounts
):
    offender = accounts[3]
    offender_with_bond(pod, stkpod, bonding, treasury, offender)
    message = decision(offender, accounts[4], slash_bps=1_000)
    signatures = signed_by(slashing, validators[1:], message)
    slashing.slash(as_tuple(message), signatures, {"from": accounts[9]})
    with brownie.reverts(revert_pattern=r"SlashingEvidenceAlreadyUsed: .*"):
        slashing.slash(as_tuple(message), signatures, {"from": accounts[9]})


def test_evidence_is_spent_per_offender(pod, stkpod, bonding, slashing, treasury, validators, accounts):
    """Low finding: a global evidence hash let one decision block another offender's with the same hash."""
    first, second = accounts[3], accounts[5]
    for offender in (first, second):
        offender_with_bond(pod, stkpod, bonding, treasury, offender)
        message = decision(offender, accounts[4], slash_bps=1_000)
        slashing.slash(as_tuple(message), signed_by(slashing, validators[1:], message), {"from": accounts[9]})
    assert slashing.isEvidenceUsed(first, EVIDENCE) and slashing.isEvidenceUsed(second, EVIDENCE)
    assert not slashing.isEvidenceUsed(accounts[6], EVIDENCE)


def test_a_decision_cannot_be_signed_to_be_played_much_later(
    pod, stkpod, bonding, slashing, treasury, validators, accounts
):
    """Low finding: decisions had no maximum deadline."""
    offender = accounts[3]
    offender_with_bond(pod, stkpod, bonding, treasury, offender)
    far = decision(offender, accounts[4], deadline=chain[-1].timestamp + 30 * 86400)
    with brownie.reverts(revert_pattern=r"SlashingDeadlineTooFar: .*"):
        slashing.slash(as_tuple(far), signed_by(slashing, validators[1:], far), {"from": accounts[9]})
    assert slashing.MAX_DECISION_TTL() == 7 * 86400


def test_expired_decision_reverts(pod, stkpod, bonding, slashing, treasury, validators, accounts):
    offender = accounts[3]
    offender_with_bond(pod, stkpod, bonding, treasury, offender)
    message = decision(offender, accounts[4], deadline=chain[-1].timestamp + 60)
    signatures = signed_by(slashing, validators[1:], message)
    chain.sleep(120)
    chain.mine()
    with brownie.reverts(revert_pattern=r"SlashingDecisionExpired: .*"):
        slashing.slash(as_tuple(message), signatures, {"from": accounts[9]})


def test_slash_bps_zero_or_above_the_maximum_reverts(
    pod, stkpod, bonding, slashing, treasury, validators, accounts
):
    offender = accounts[3]
    offender_with_bond(pod, stkpod, bonding, treasury, offender)
    for bps in (0, slashing.maxSlashBps() + 1):
        message = decision(offender, accounts[4], slash_bps=bps)
        with brownie.reverts(revert_pattern=r"SlashingBpsOutOfBounds: .*"):
            slashing.slash(
                as_tuple(message), signed_by(slashing, validators[1:], message), {"from": accounts[9]}
            )


def test_offender_cannot_be_its_own_reporter(pod, stkpod, bonding, slashing, treasury, validators, accounts):
    offender = accounts[3]
    offender_with_bond(pod, stkpod, bonding, treasury, offender)
    message = decision(offender, offender)
    with brownie.reverts(revert_pattern=r"SlashingReporterIsOffender: .*"):
        slashing.slash(as_tuple(message), signed_by(slashing, validators[1:], message), {"from": offender})


def test_nothing_to_slash_reverts(slashing, validators, accounts):
    message = decision(accounts[3], accounts[4])
    with brownie.reverts(revert_pattern=r"SlashingNothingToSlash: .*"):
        slashing.slash(as_tuple(message), signed_by(slashing, validators[1:], message), {"from": accounts[9]})


def test_without_quorum_or_with_tampered_terms_nothing_happens(
    pod, stkpod, bonding, slashing, treasury, validators, accounts
):
    offender = accounts[3]
    shares = offender_with_bond(pod, stkpod, bonding, treasury, offender)
    message = decision(offender, accounts[4], slash_bps=1_000)
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        slashing.slash(as_tuple(message), signed_by(slashing, validators[:3], message), {"from": accounts[9]})
    # Raising the slash after signing changes the digest: the signatures recover to strangers.
    tampered = dict(message, slashBps=5_000)
    with brownie.reverts(revert_pattern=r"ValidatorQuorum(NotReached|SignersNotAscending): .*"):
        slashing.slash(
            as_tuple(tampered), signed_by(slashing, validators[1:], message), {"from": accounts[9]}
        )
    assert bonding.slashableOf(offender) == shares and not slashing.isEvidenceUsed(offender, EVIDENCE)


def test_slashing_needs_to_be_the_bound_slasher(
    Slashing, pod, stkpod, bonding, validator_quorum, treasury, validators, accounts, deployer
):
    rogue = Slashing.deploy(bonding, validator_quorum, deployer, {"from": deployer})
    offender = accounts[3]
    offender_with_bond(pod, stkpod, bonding, treasury, offender)
    message = decision(offender, accounts[4], slash_bps=1_000)
    with brownie.reverts(revert_pattern=r"BondingUnauthorizedSlasher: .*"):
        rogue.slash(as_tuple(message), signed_by(rogue, validators[1:], message), {"from": accounts[9]})


def test_parameters_are_bounded_and_governed(slashing, bonding, validator_quorum, deployer, accounts):
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        slashing.setMaxSlashBps(1_000, {"from": accounts[6]})
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        slashing.setReporterRewardBps(1_000, {"from": accounts[6]})
    for bad in (0, 10_001):
        with brownie.reverts(revert_pattern=r"SlashingParameterOutOfBounds: .*"):
            slashing.setMaxSlashBps(bad, {"from": deployer})
    with brownie.reverts(revert_pattern=r"SlashingParameterOutOfBounds: .*"):
        slashing.setReporterRewardBps(5_001, {"from": deployer})
    assert slashing.setMaxSlashBps(2_500, {"from": deployer}).events["MaxSlashBpsSet"]["maxSlashBps"] == 2_500
    assert (
        slashing.setReporterRewardBps(0, {"from": deployer}).events["ReporterRewardBpsSet"][
            "reporterRewardBps"
        ]
        == 0
    )
    assert (slashing.maxSlashBps(), slashing.reporterRewardBps()) == (2_500, 0)
    assert (slashing.bonding(), slashing.quorum()) == (bonding, validator_quorum)


def test_the_share_validators_slash_is_one_governed_value_within_the_maximum(slashing, deployer, accounts):
    """Validators read the share their decisions take from here, so that none can sign a decision (or book
    awards) for a share of its own."""
    assert slashing.slashBps() == 5_000
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        slashing.setSlashBps(1_000, {"from": accounts[6]})
    for bad in (0, 10_001):
        with brownie.reverts(revert_pattern=r"SlashingParameterOutOfBounds: .*"):
            slashing.setSlashBps(bad, {"from": deployer})
    assert slashing.setSlashBps(7_000, {"from": deployer}).events["SlashBpsSet"]["slashBps"] == 7_000
    assert slashing.slashBps() == 5_000  # capped by maxSlashBps
    slashing.setMaxSlashBps(8_000, {"from": deployer})
    assert slashing.slashBps() == 7_000
    slashing.setSlashBps(100, {"from": deployer})
    assert slashing.slashBps() == 100


def test_a_validator_is_judged_without_its_own_weight(
    slashing, bonding, validator_quorum, validators, accounts
):
    """Medium finding: the heaviest validator (4 of 10) used to veto its own slash, its weight counting in
    the total; now 1 + 2 + 3 of the other 6 decide, and its own signature adds nothing."""
    heaviest, others = validators[3], validators[:3]
    bond_before = bonding.activeBondOf(heaviest)
    with_itself = decision(heaviest, accounts[4], slash_bps=5_000, evidence=keccak(b"first"))
    with brownie.reverts(revert_pattern=r"ValidatorQuorumNotReached: .*"):
        slashing.slash(
            as_tuple(with_itself),
            signed_by(slashing, [validators[0], heaviest], with_itself),
            {"from": heaviest},
        )
    message = decision(heaviest, accounts[4], slash_bps=5_000)
    slashing.slash(as_tuple(message), signed_by(slashing, others, message), {"from": accounts[9]})
    assert bonding.activeBondOf(heaviest) == bond_before // 2
    # Its weight is the elected snapshot until the next set is installed (its stake stays slashable while
    # it thaws, longer than an epoch); the next election weighs the smaller bond.
    assert validator_quorum.weightOf(heaviest) == bond_before


def test_strike_decision_digest_matches_the_protocols_module(slashing, accounts):
    """Cross-part check: protocols.eth (what validators sign with) and Slashing hash StrikeDecision alike."""
    assert slashing.STRIKE_DECISION_TYPEHASH() == "0x" + eth.STRIKE_DECISION.type_hash.hex()
    message = decision(accounts[3], accounts[4])
    domain = eth.TypedDomain("Dolphin Network", "1", chain.id, bytes.fromhex(slashing.address[2:]))
    values = dict(message, offender=bytes.fromhex(message["offender"][2:]))
    values["reporter"] = bytes.fromhex(message["reporter"][2:])
    expected = eth.typed_digest(domain, eth.STRIKE_DECISION, values)
    assert bytes(slashing.hashStrikeDecision(as_tuple(message))) == expected


def test_a_reporting_validator_is_rewarded_in_bonded_stake(
    pod, stkpod, bonding, slashing, treasury, validators, accounts
):
    offender, reporter = accounts[3], validators[0]
    shares = offender_with_bond(pod, stkpod, bonding, treasury, offender)
    bonded_before = bonding.activeBondOf(reporter)
    message = decision(offender, reporter, slash_bps=5_000)
    tx = slashing.slash(
        as_tuple(message), signed_by(slashing, validators[1:], message), {"from": accounts[9]}
    )
    cut = tx.events["StrikeExecuted"]["reporterShares"]
    assert cut == shares // 2 // 10
    assert stkpod.balanceOf(reporter) == 0
    assert bonding.activeBondOf(reporter) == bonded_before + cut


def test_strike_rules_are_the_documented_defaults_and_governed(slashing, deployer, accounts):
    """Every validator and router reads the ban rules and the awards here, not from local config."""
    reasons, severities, ban_points, ban_validators, window, validator_award, user_award = (
        slashing.strikeRules()
    )
    assert list(reasons) == list(STRIKE_REASONS)
    assert dict(zip(reasons, severities, strict=True)) == dict(DEFAULT_SEVERITIES)
    assert (ban_points, ban_validators, window) == (12, 2, 7)
    assert (validator_award, user_award) == (100 * POD_UNIT, 50 * POD_UNIT)
    new = [2] * len(reasons)
    with brownie.reverts(revert_pattern=r"AccessControlUnauthorizedAccount: .*"):
        slashing.setStrikeRules(new, 10, 3, 5, 0, 0, {"from": accounts[6]})
    with brownie.reverts(revert_pattern=r"SlashingSeveritiesLength: .*"):
        slashing.setStrikeRules(new[:-1], 10, 3, 5, 0, 0, {"from": deployer})
    for bad in (
        ([0, *new[1:]], 10, 3, 5, 0, 0),  # a reason worth nothing
        (new, 10, 1, 5, 0, 0),  # one validator alone could ban
        (new, 10, 3, 24, 0, 0),  # a window the unbound period cannot cover
        (new, 10, 3, 5, 10_001 * POD_UNIT, 0),
    ):
        with brownie.reverts(revert_pattern=r"SlashingParameterOutOfBounds: .*"):
            slashing.setStrikeRules(*bad, {"from": deployer})
    tx = slashing.setStrikeRules(new, 10, 3, 5, 7, 8, {"from": deployer})
    assert tx.events["StrikeRulesSet"]["banPoints"] == 10
    rules = slashing.strikeRules()
    assert list(rules[1]) == new and [int(v) for v in rules[2:]] == [10, 3, 5, 7, 8]
