from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import eth, messages
from protocols.errors import SchemaError, SignatureError
from protocols.testing import TEST_DOMAIN, eth_account
from tests.eip712 import typed_data
from tests.examples import examples
from tests.protocols.strategies import record_strategy

pytestmark = pytest.mark.unit

ETH_SIGNED = [
    messages.OperatorBinding,
    messages.CreditAuthorisation,
    messages.StrikeReport,
    messages.StrikeDecisionSignature,
    messages.SettlementSignature,
    messages.CreditDebitSignature,
]
CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def test_eip712_spec_vectors():
    """The example of EIP-712 itself: its domain separator, and the address of its 'cow' key."""
    domain = eth.TypedDomain("Ether Mail", "1", 1, bytes.fromhex("cccccccccccccccccccccccccccccccccccccccc"))
    assert domain.separator.hex() == "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
    cow = eth.EthAccount(eth.keccak256(b"cow"))
    assert eth.to_checksum_address(cow.address) == "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
    person = eth.Struct("Person", (("name", "string"), ("wallet", "address")))
    assert person.type_string == "Person(string name,address wallet)"


def _eth_account_typed_data(domain, struct, values):
    """The same typed data in eth-account's JSON form, to cross-check with an independent implementation."""

    def plain(v):
        if isinstance(v, tuple):
            return [plain(item) for item in v]
        return "0x" + v.hex() if isinstance(v, bytes) and len(v) == 20 else v

    return typed_data(
        struct.name,
        [{"name": n, "type": t} for n, t in struct.fields],
        {k: plain(v) for k, v in values.items()},
        chain_id=domain.chain_id,
        verifying_contract="0x" + domain.verifying_contract.hex(),
        name=domain.name,
        version=domain.version,
    )


@pytest.mark.parametrize("cls", ETH_SIGNED, ids=lambda c: c.__name__)
@settings(max_examples=examples(15), deadline=None)
@given(data=st.data())
def test_sign_and_recover_agree_with_eth_account(cls, data):
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    account = eth_account(data.draw(st.integers(0, 5)))
    drawn = data.draw(record_strategy(cls))
    fields = {name: getattr(drawn, name) for name in cls.__specs__ if name != "signature"}
    fields[cls.SIGNER_FIELD] = account.address
    signed = messages.eth_sign(cls, account, TEST_DOMAIN, **fields)
    assert messages.eth_signer(signed, TEST_DOMAIN) == account.address

    values = cls.typed_values(lambda name: getattr(signed, name))
    typed = encode_typed_data(full_message=_eth_account_typed_data(TEST_DOMAIN, cls.EIP712, values))
    recovered = Account.recover_message(typed, signature=signed.signature)
    assert recovered == eth.to_checksum_address(account.address)


def _strike(account, **overrides):
    fields = dict(
        validator=account.address,
        node_key=b"\1" * 32,
        operator=b"\2" * 20,
        model=b"\3" * 32,
        epoch=7,
        reason="too_fast",
        severity=3,
        evidence_hash=messages.evidence_hash((b"receipt",)),
        evidence=(b"receipt",),
    )
    fields.update(overrides)
    return messages.eth_sign(messages.StrikeReport, account, TEST_DOMAIN, **fields)


def test_rejections():
    account, other = eth_account(1), eth_account(2)
    strike = _strike(account)
    import dataclasses

    # Another chain or contract: the domain separates them.
    for domain in (
        eth.TypedDomain("Dolphin Network", "1", 1, TEST_DOMAIN.verifying_contract),
        eth.TypedDomain("Dolphin Network", "1", TEST_DOMAIN.chain_id, b"\0" * 20),
    ):
        with pytest.raises(SignatureError):
            messages.eth_signer(strike, domain)
    # Altered content, or a claim to be someone else.
    with pytest.raises(SignatureError):
        messages.eth_signer(dataclasses.replace(strike, epoch=8), TEST_DOMAIN)
    with pytest.raises(SignatureError):
        messages.eth_signer(dataclasses.replace(strike, validator=other.address), TEST_DOMAIN)
    # Malleated signature (s -> n - s, v flipped) and bad v values, refused as OpenZeppelin's ECDSA does.
    r, s, v = strike.signature[:32], int.from_bytes(strike.signature[32:64], "big"), strike.signature[64]
    high_s = r + (eth._SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    for bad in (high_s, strike.signature[:64] + b"\x00", strike.signature[:64] + b"\x1d", b"\0" * 65):
        with pytest.raises(SignatureError):
            messages.eth_signer(dataclasses.replace(strike, signature=bad), TEST_DOMAIN)
    # Signing for another address is refused before signing.
    with pytest.raises(SchemaError):
        _strike(account, validator=other.address)


def test_strike_reason_codes_are_stable():
    # These codes are part of the contracts' ABI: changing one is a breaking change.
    assert messages.STRIKE_REASONS == {
        "wrong_model": 1,
        "tokenizer_mismatch": 2,
        "too_slow": 3,
        "too_fast": 4,
        "bad_receipt": 5,
        "unavailable": 6,
        "fabricated_output": 7,
        "user_report": 8,
        "false_benchmark": 9,
    }
    assert eth.STRIKE_REPORT.type_string == (
        "StrikeReport(address validator,bytes32 nodeKey,address operator,bytes32 model,uint64 epoch,"
        "uint8 reason,uint8 severity,bytes32 evidenceHash)"
    )


@pytest.mark.parametrize(
    "struct, source",
    [
        (eth.NODE_BINDING, "bonding/Bonding.sol"),
        (eth.STRIKE_DECISION, "bonding/Slashing.sol"),
        (eth.EPOCH_ROOT, "rewards/RewardsDistributor.sol"),
        (eth.CREDIT_DEBIT_BATCH, "credits/Credits.sol"),
    ],
    ids=lambda x: getattr(x, "name", None),
)
def test_structs_match_the_contracts_type_strings(struct, source):
    """Against the real contracts: the type string each one hashes is ours, character for character."""
    flat = " ".join((CONTRACTS / source).read_text().split())
    assert f'keccak256( "{struct.type_string}" )' in flat.replace('("', '( "').replace('")', '" )')


def test_contract_domain_name_and_version():
    for source in (
        "bonding/Bonding.sol",
        "bonding/Slashing.sol",
        "rewards/RewardsDistributor.sol",
        "credits/Credits.sol",
    ):
        assert 'EIP712("Dolphin Network", "1")' in (CONTRACTS / source).read_text(), source
    assert (TEST_DOMAIN.name, TEST_DOMAIN.version) == ("Dolphin Network", "1")
