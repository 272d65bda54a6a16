"""The exchange format: the spec's worked example byte for byte, strict decoding, round trips."""

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.errors import RewardsInputError, RewardsParamsError
from chain.rewards import (
    AccountClose,
    AccountEpoch,
    AccountState,
    Competition,
    EpochClose,
    RewardParams,
    Snapshot,
    close_epoch,
    decode_document,
    encode_document,
    encode_result,
    format_multiplier,
)
from tests.conftest import spec_path
from tests.examples import examples

pytestmark = pytest.mark.unit


def spec_text(name: str) -> str:
    return spec_path(name).read_text()


def test_worked_example_byte_for_byte():
    params, accounts = decode_document(spec_text("rewards-example.json"))
    assert encode_result(close_epoch(accounts, params)) == spec_text("rewards-example.out.json")


def test_output_feeds_the_next_close():
    params, accounts = decode_document(spec_text("rewards-example.json"))
    result = close_epoch(accounts, params)
    inputs = json.loads(spec_text("rewards-example.json"))["accounts"]
    outputs = json.loads(encode_result(result))["accounts"]
    # The next epoch's document: each account's output state and snapshot with a fresh input.
    following = {
        account_id: {"state": out["state"], "snapshot": out["snapshot"], "input": inputs[account_id]["input"]}
        for account_id, out in outputs.items()
    }
    _, again = decode_document(json.dumps({"accounts": following}))
    for account_id, entry in again.items():
        assert entry.state == result.accounts[account_id].state
        assert entry.snapshot == result.accounts[account_id].snapshot
    assert all(
        close.state.closed_epochs == 11
        for close in close_epoch(again, params).accounts.values()
        if close.state.closed_epochs > 2
    )


def test_input_document_round_trip():
    _, accounts = decode_document(spec_text("rewards-example.json"))
    text = encode_document(RewardParams(percentile=90), accounts)
    params_again, accounts_again = decode_document(text)
    assert params_again == RewardParams(percentile=90)
    assert accounts_again == accounts


def account(**parts: object) -> dict:
    base = {
        "state": {
            "smoothed": "1",
            "lifetime": "2",
            "history": ["3"],
            "closed_epochs": 1,
            "validator": False,
        },
        "snapshot": {"multiplier": "6/5", "denominator": "5"},
        "input": {"base_reward": "7", "registered": True, "suspended": False, "active_bond": "0"},
    }
    for path, value in parts.items():
        # "section__field" sets a field, "section" a whole section; the value ... deletes it.
        section, _, field = path.partition("__")
        target, key = (base[section], field) if field else (base, section)
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return base


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not a JSON document"),
        ("[]", "must be a JSON object"),
        ('{"params": {}}', "missing field(s) ['accounts']"),
        ('{"accounts": {}, "extra": 1}', "unknown field(s) ['extra']"),
        ('{"accounts": [], "params": {}}', "'accounts' must be an object"),
        ('{"accounts": {}, "params": []}', "'params' must be an object"),
        ('{"accounts": {"a": {"input": {}}, "a": {"input": {}}}}', "duplicate key 'a'"),
        ({"": account()}, "an account ID must not be empty"),
        ({"x": 5}, "account 'x': must be an object"),
        ({"x": account(input=...)}, "account 'x': missing field(s) ['input']"),
        ({"x": account(input__active_bond=...)}, "account 'x' input: missing field(s) ['active_bond']"),
        ({"x": account(input__bond="1")}, "account 'x' input: unknown field(s) ['bond']"),
        ({"x": account(input__base_reward="-1")}, "account 'x': input.base_reward must be a decimal string"),
        ({"x": account(input__base_reward="01")}, "input.base_reward must be a decimal string"),
        ({"x": account(input__base_reward=" 1")}, "input.base_reward must be a decimal string"),
        ({"x": account(input__base_reward="1_000")}, "input.base_reward must be a decimal string"),
        ({"x": account(input__base_reward="1e3")}, "input.base_reward must be a decimal string"),
        ({"x": account(input__base_reward="\u0661")}, "input.base_reward must be a decimal string"),
        ({"x": account(input__base_reward=7)}, "input.base_reward must be a decimal string"),
        ({"x": account(input__active_bond=str(2**256))}, "input.active_bond must be a decimal string"),
        ({"x": account(input__registered="true")}, "account 'x': input.registered must be a JSON boolean"),
        ({"x": account(input__suspended=0)}, "input.suspended must be a JSON boolean"),
        ({"x": account(state__closed_epochs="1")}, "state.closed_epochs must be a non-negative JSON integer"),
        (
            {"x": account(state__closed_epochs=True)},
            "state.closed_epochs must be a non-negative JSON integer",
        ),
        ({"x": account(state__closed_epochs=-1)}, "state.closed_epochs must be a non-negative JSON integer"),
        ({"x": account(state__history="3")}, "state.history must be a list"),
        ({"x": account(state__history=["3", 4])}, "account 'x': state.history[1] must be a decimal string"),
        ({"x": account(state__validator=...)}, "account 'x' state: missing field(s) ['validator']"),
        ({"x": account(state=[])}, "account 'x': state must be an object"),
        ({"x": account(snapshot__multiplier="12/10")}, "snapshot.multiplier must be in lowest terms"),
        ({"x": account(snapshot__multiplier="1")}, 'snapshot.multiplier must be a "num/den" string'),
        ({"x": account(snapshot__multiplier="6/0")}, "snapshot.multiplier must be in lowest terms"),
        ({"x": account(snapshot__multiplier="4/5")}, "snapshot.multiplier must be at least 1/1"),
        ({"x": account(snapshot__multiplier=1.2)}, 'snapshot.multiplier must be a "num/den" string'),
        ({"x": account(snapshot__denominator=...)}, "account 'x' snapshot: missing field(s) ['denominator']"),
        ({"x": account(snapshot__boost_eligible="no")}, "snapshot.boost_eligible must be a JSON boolean"),
    ],
)
def test_malformed_documents_are_refused_with_account_and_field(document, message):
    text = document if isinstance(document, str) else json.dumps({"params": {}, "accounts": document})
    with pytest.raises(RewardsInputError) as raised:
        decode_document(text)
    assert message in str(raised.value)


def test_bad_parameter_override_is_a_params_error():
    with pytest.raises(RewardsParamsError, match="'percentile' must be within"):
        decode_document(json.dumps({"params": {"percentile": 0}, "accounts": {}}))


def test_new_account_needs_only_input_and_flags_in_snapshot_are_optional():
    params, accounts = decode_document(json.dumps({"accounts": {"n": {"input": account()["input"]}}}))
    assert accounts["n"] == AccountEpoch(accounts["n"].input)
    assert params == RewardParams()
    _, accounts = decode_document(json.dumps({"accounts": {"x": account()}}))
    assert accounts["x"].snapshot is not None and accounts["x"].snapshot.boost_eligible is False


def json_dumps_reference(result: EpochClose) -> str:
    """The output document through json.dumps, which the direct writer must match byte for byte."""
    accounts = {}
    for account_id in sorted(result.accounts):
        close = result.accounts[account_id]
        state, snapshot = close.state, close.snapshot
        accounts[account_id] = {
            "state": {
                "smoothed": str(state.smoothed),
                "lifetime": str(state.lifetime),
                "history": [str(amount) for amount in state.history],
                "closed_epochs": state.closed_epochs,
                "validator": state.validator,
            },
            "snapshot": {
                "multiplier": format_multiplier(snapshot.multiplier),
                "denominator": str(snapshot.denominator),
                "boost_eligible": snapshot.boost_eligible,
                "validator_eligible": snapshot.validator_eligible,
            },
            "reward": str(close.reward),
        }
    return json.dumps({"accounts": accounts}, indent=1)


wei = st.integers(0, 2**256 - 1)
closes = st.builds(
    AccountClose,
    st.builds(
        AccountState, wei, wei, st.lists(wei, max_size=8).map(tuple), st.integers(0, 10**6), st.booleans()
    ),
    st.builds(
        Snapshot,
        st.fractions(min_value=1, max_value=2, max_denominator=10**30).map(Fraction),
        wei,
        st.booleans(),
        st.booleans(),
    ),
    wei,
)


@settings(max_examples=examples(200), deadline=None)
@given(st.dictionaries(st.text(max_size=12), closes, max_size=6))
def test_output_writer_matches_json_dumps(accounts):
    # IDs of any text (quotes, control characters, non-ASCII), empty histories, no accounts at all.
    result = EpochClose(accounts, Competition(0, 0, False))
    assert encode_result(result) == json_dumps_reference(result)
