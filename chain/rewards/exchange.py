"""The exchange format of spec/rewards.md: the JSON a settler's epoch close reads and writes.

Big integers are canonical decimal strings, multipliers `"num/den"` in lowest terms, booleans JSON
booleans, `closed_epochs` a JSON integer. The decoder is strict (unknown or duplicate keys, non-canonical
numbers and wrong types are refused with the account and field named) because settlers must agree on the
bits; the encoder writes accounts sorted by ID so that the output does not depend on the input's order.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from fractions import Fraction
from typing import Any

from chain.errors import RewardsInputError
from chain.rewards.engine import AccountEpoch, AccountState, EpochClose, EpochInput, Snapshot
from chain.rewards.params import INTEGER_TEXT, UINT256_MAX, RewardParams

_TOP_KEYS = frozenset({"params", "accounts"})
_ACCOUNT_KEYS = frozenset({"state", "snapshot", "input"})
_STATE_KEYS = ("smoothed", "lifetime", "history", "closed_epochs", "validator")
_SNAPSHOT_KEYS = ("multiplier", "denominator")
_SNAPSHOT_FLAGS = ("boost_eligible", "validator_eligible")
_INPUT_KEYS = ("base_reward", "registered", "suspended", "active_bond")


def decode_document(text: str | bytes) -> tuple[RewardParams, dict[str, AccountEpoch]]:
    """Parse an input document into the parameters and each account's input, in document order.

    Raises RewardsInputError (RewardsParamsError for a bad parameter) saying which account and field.
    """
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RewardsInputError(f"not a JSON document: {error}") from error
    if not isinstance(document, dict):
        raise RewardsInputError("the document must be a JSON object with 'accounts' (and optional 'params')")
    _check_keys("the document", document, _TOP_KEYS, required=("accounts",))
    overrides = document.get("params", {})
    if not isinstance(overrides, dict):
        raise RewardsInputError(f"'params' must be an object of parameter overrides, got {overrides!r}")
    params = RewardParams.from_overrides(overrides)
    raw_accounts = document["accounts"]
    if not isinstance(raw_accounts, dict):
        raise RewardsInputError(
            f"'accounts' must be an object keyed by account ID, got {type(raw_accounts).__name__}"
        )
    accounts = {account_id: _decode_account(account_id, raw) for account_id, raw in raw_accounts.items()}
    return params, accounts


def encode_result(result: EpochClose) -> str:
    """The output document for `result`, byte for byte as spec/rewards-example.out.json writes it.

    One-space indentation, keys in the spec's order, accounts sorted by ID, no trailing newline.
    """
    return json.dumps(
        {
            "accounts": {
                account_id: _encode_close(result.accounts[account_id])
                for account_id in sorted(result.accounts)
            }
        },
        indent=1,
    )


def encode_document(params: RewardParams, accounts: dict[str, AccountEpoch]) -> str:
    """An input document (the inverse of decode_document), for tools and tests that produce inputs."""
    encoded: dict[str, Any] = {}
    for account_id in sorted(accounts):
        entry = accounts[account_id]
        encoded[account_id] = {"state": _encode_state(entry.state)}
        if entry.snapshot is not None:
            encoded[account_id]["snapshot"] = _encode_snapshot(entry.snapshot)
        observed = entry.input
        encoded[account_id]["input"] = {
            "base_reward": str(observed.base_reward),
            "registered": observed.registered,
            "suspended": observed.suspended,
            "active_bond": str(observed.active_bond),
        }
    return json.dumps({"params": params.overrides(), "accounts": encoded}, indent=1)


def format_multiplier(multiplier: Fraction) -> str:
    """ "num/den" in lowest terms, "1/1" included (str(Fraction(1)) would drop the denominator)."""
    return f"{multiplier.numerator}/{multiplier.denominator}"


def _encode_close(close: Any) -> dict[str, Any]:
    return {
        "state": _encode_state(close.state),
        "snapshot": _encode_snapshot(close.snapshot),
        "reward": str(close.reward),
    }


def _encode_state(state: AccountState) -> dict[str, Any]:
    return {
        "smoothed": str(state.smoothed),
        "lifetime": str(state.lifetime),
        "history": [str(amount) for amount in state.history],
        "closed_epochs": state.closed_epochs,
        "validator": state.validator,
    }


def _encode_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "multiplier": format_multiplier(snapshot.multiplier),
        "denominator": str(snapshot.denominator),
        "boost_eligible": snapshot.boost_eligible,
        "validator_eligible": snapshot.validator_eligible,
    }


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys; two settlers reading such a document could
    # disagree on what it says, so it is refused.
    decoded: dict[str, Any] = {}
    for key, value in pairs:
        if key in decoded:
            raise RewardsInputError(f"duplicate key {key!r} in the document")
        decoded[key] = value
    return decoded


def _check_keys(where: str, obj: dict[str, Any], allowed: Collection[str], required: Collection[str]) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise RewardsInputError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [key for key in required if key not in obj]
    if missing:
        raise RewardsInputError(f"{where}: missing field(s) {missing}")


def _decode_account(account_id: str, raw: Any) -> AccountEpoch:
    where = f"account {account_id!r}"
    if not account_id:
        raise RewardsInputError("an account ID must not be empty")
    if not isinstance(raw, dict):
        raise RewardsInputError(f"{where}: must be an object with 'input' (and optional 'state', 'snapshot')")
    _check_keys(where, raw, _ACCOUNT_KEYS, required=("input",))

    observed = _object(where, "input", raw["input"])
    _check_keys(f"{where} input", observed, _INPUT_KEYS, required=_INPUT_KEYS)
    epoch_input = EpochInput(
        base_reward=_amount(where, "input.base_reward", observed["base_reward"]),
        registered=_flag(where, "input.registered", observed["registered"]),
        suspended=_flag(where, "input.suspended", observed["suspended"]),
        active_bond=_amount(where, "input.active_bond", observed["active_bond"]),
    )

    state = AccountState()
    if "state" in raw:
        fields = _object(where, "state", raw["state"])
        _check_keys(f"{where} state", fields, _STATE_KEYS, required=_STATE_KEYS)
        history = fields["history"]
        if not isinstance(history, list):
            raise RewardsInputError(
                f"{where}: state.history must be a list of decimal strings, got {history!r}"
            )
        closed_epochs = fields["closed_epochs"]
        if type(closed_epochs) is not int or closed_epochs < 0:
            raise RewardsInputError(
                f"{where}: state.closed_epochs must be a non-negative JSON integer, got {closed_epochs!r}"
            )
        state = AccountState(
            smoothed=_amount(where, "state.smoothed", fields["smoothed"]),
            lifetime=_amount(where, "state.lifetime", fields["lifetime"]),
            history=tuple(_amount(where, f"state.history[{i}]", amount) for i, amount in enumerate(history)),
            closed_epochs=closed_epochs,
            validator=_flag(where, "state.validator", fields["validator"]),
        )

    snapshot = None
    if "snapshot" in raw:
        fields = _object(where, "snapshot", raw["snapshot"])
        _check_keys(f"{where} snapshot", fields, _SNAPSHOT_KEYS + _SNAPSHOT_FLAGS, required=_SNAPSHOT_KEYS)
        snapshot = Snapshot(
            multiplier=_multiplier(where, fields["multiplier"]),
            denominator=_amount(where, "snapshot.denominator", fields["denominator"]),
            boost_eligible=_flag(where, "snapshot.boost_eligible", fields.get("boost_eligible", False)),
            validator_eligible=_flag(
                where, "snapshot.validator_eligible", fields.get("validator_eligible", False)
            ),
        )
    return AccountEpoch(epoch_input, state, snapshot)


def _object(where: str, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RewardsInputError(f"{where}: {field} must be an object, got {value!r}")
    return value


def _amount(where: str, field: str, value: Any) -> int:
    # Canonical decimal only: int() would also take "+5", " 5", "5_000" and non-ASCII digits.
    if not isinstance(value, str) or INTEGER_TEXT.fullmatch(value) is None or int(value) > UINT256_MAX:
        raise RewardsInputError(f"{where}: {field} must be a decimal string of wei (uint256), got {value!r}")
    return int(value)


def _flag(where: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RewardsInputError(f"{where}: {field} must be a JSON boolean, got {value!r}")
    return value


def _multiplier(where: str, value: Any) -> Fraction:
    numerator, _, denominator = value.partition("/") if isinstance(value, str) else ("", "", "")
    if INTEGER_TEXT.fullmatch(numerator) is None or INTEGER_TEXT.fullmatch(denominator) is None:
        raise RewardsInputError(f'{where}: snapshot.multiplier must be a "num/den" string, got {value!r}')
    multiplier = Fraction(int(numerator), int(denominator)) if int(denominator) else None
    if multiplier is None or format_multiplier(multiplier) != value:
        raise RewardsInputError(f"{where}: snapshot.multiplier must be in lowest terms, got {value!r}")
    if multiplier < 1:
        raise RewardsInputError(f"{where}: snapshot.multiplier must be at least 1/1, got {value!r}")
    return multiplier
