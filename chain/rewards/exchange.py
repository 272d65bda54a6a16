"""The exchange format of docs/rewards.md: the JSON a settler's epoch close reads and writes.

Big integers are canonical decimal strings, multipliers `"num/den"` in lowest terms, booleans JSON
booleans, `closed_epochs` a JSON integer. The decoder is strict (unknown or duplicate keys, non-canonical
numbers and wrong types are refused with the account and field named) because settlers must agree on the
bits; the encoder writes accounts sorted by ID so that the output does not depend on the input's order.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

from chain.errors import RewardsInputError
from chain.rewards.engine import (
    AccountClose,
    AccountEpoch,
    AccountState,
    EpochClose,
    EpochInput,
    Snapshot,
    collector_paused,
)
from chain.rewards.params import UINT256_MAX, RewardParams

_TOP_KEYS = frozenset({"params", "accounts"})
_ACCOUNT_KEYS = frozenset({"state", "snapshot", "input"})
_STATE_KEYS = frozenset({"smoothed", "lifetime", "history", "closed_epochs", "validator"})
_SNAPSHOT_KEYS = frozenset({"multiplier", "denominator"})
_SNAPSHOT_ALL_KEYS = _SNAPSHOT_KEYS | {"boost_eligible", "validator_eligible"}
_INPUT_KEYS = frozenset({"base_reward", "registered", "suspended", "active_bond"})


def decode_document(text: str | bytes) -> tuple[RewardParams, dict[str, AccountEpoch]]:
    """Parse an input document into the parameters and each account's input, in document order.

    Raises RewardsInputError (RewardsParamsError for a bad parameter) saying which account and field.
    """
    with collector_paused():
        return _decode_document(text)


def _decode_document(text: str | bytes) -> tuple[RewardParams, dict[str, AccountEpoch]]:
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RewardsInputError(f"not a JSON document: {error}") from error
    if not isinstance(document, dict):
        raise RewardsInputError("the document must be a JSON object with 'accounts' (and optional 'params')")
    _check_keys("the document", document, _TOP_KEYS, required=frozenset({"accounts"}))
    overrides = document.get("params", {})
    if not isinstance(overrides, dict):
        raise RewardsInputError(f"'params' must be an object of parameter overrides, got {overrides!r}")
    params = RewardParams.from_overrides(overrides)
    raw_accounts = document["accounts"]
    if not isinstance(raw_accounts, dict):
        raise RewardsInputError(
            f"'accounts' must be an object keyed by account ID, got {type(raw_accounts).__name__}"
        )
    # Each parsed JSON object is dropped once decoded, so a million accounts never exist twice in full.
    del document
    accounts = {}
    for account_id in list(raw_accounts):
        accounts[account_id] = _decode_account(account_id, raw_accounts.pop(account_id))
    return params, accounts


def encode_result(result: EpochClose) -> str:
    """The output document for `result`, byte for byte as docs/rewards-example.out.json writes it.

    That is `json.dumps(document, indent=1)` with keys in the spec's order, accounts sorted by ID and no
    trailing newline. The fixed layout is written directly: json's indenting encoder is pure Python and
    took longer than the close itself. The tests hold this writer to json.dumps.
    """
    with collector_paused():
        if not result.accounts:
            return '{\n "accounts": {}\n}'
        accounts = result.accounts
        chunks = [_write_close(account_id, accounts[account_id]) for account_id in sorted(accounts)]
        return '{\n "accounts": {' + ",".join(chunks) + "\n }\n}"


def _write_close(account_id: str, close: AccountClose) -> str:
    state, snapshot = close.state, close.snapshot
    history = '[\n     "' + '",\n     "'.join(map(str, state.history)) + '"\n    ]' if state.history else "[]"
    multiplier = snapshot.multiplier
    return (
        f"\n  {json.dumps(account_id)}: {{"
        f'\n   "state": {{'
        f'\n    "smoothed": "{state.smoothed}",'
        f'\n    "lifetime": "{state.lifetime}",'
        f'\n    "history": {history},'
        f'\n    "closed_epochs": {state.closed_epochs},'
        f'\n    "validator": {_JSON_BOOL[state.validator]}'
        f"\n   }},"
        f'\n   "snapshot": {{'
        f'\n    "multiplier": "{multiplier.numerator}/{multiplier.denominator}",'
        f'\n    "denominator": "{snapshot.denominator}",'
        f'\n    "boost_eligible": {_JSON_BOOL[snapshot.boost_eligible]},'
        f'\n    "validator_eligible": {_JSON_BOOL[snapshot.validator_eligible]}'
        f"\n   }},"
        f'\n   "reward": "{close.reward}"'
        f"\n  }}"
    )


_JSON_BOOL = {True: "true", False: "false"}


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
    decoded = dict(pairs)
    if len(decoded) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RewardsInputError(f"duplicate key {key!r} in the document")
            seen.add(key)
    return decoded


def _check_keys(
    where: str, obj: dict[str, Any], allowed: frozenset[str], required: frozenset[str], section: str = ""
) -> None:
    keys = obj.keys()
    if keys <= allowed and keys >= required:  # the well-formed case, without building any message
        return
    where = f"{where} {section}" if section else where
    unknown = sorted(keys - allowed)
    if unknown:
        raise RewardsInputError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    raise RewardsInputError(f"{where}: missing field(s) {sorted(required - keys)}")


def _decode_account(account_id: str, raw: Any) -> AccountEpoch:
    where = f"account {account_id!r}"
    if not account_id:
        raise RewardsInputError("an account ID must not be empty")
    if not isinstance(raw, dict):
        raise RewardsInputError(f"{where}: must be an object with 'input' (and optional 'state', 'snapshot')")
    _check_keys(where, raw, _ACCOUNT_KEYS, required=frozenset({"input"}))

    observed = _object(where, "input", raw["input"])
    _check_keys(where, observed, _INPUT_KEYS, _INPUT_KEYS, "input")
    epoch_input = EpochInput(
        base_reward=_amount(where, "input.base_reward", observed["base_reward"]),
        registered=_flag(where, "input.registered", observed["registered"]),
        suspended=_flag(where, "input.suspended", observed["suspended"]),
        active_bond=_amount(where, "input.active_bond", observed["active_bond"]),
    )

    state = AccountState()
    if "state" in raw:
        fields = _object(where, "state", raw["state"])
        _check_keys(where, fields, _STATE_KEYS, _STATE_KEYS, "state")
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
            history=_history(where, history),
            closed_epochs=closed_epochs,
            validator=_flag(where, "state.validator", fields["validator"]),
        )

    snapshot = None
    if "snapshot" in raw:
        fields = _object(where, "snapshot", raw["snapshot"])
        _check_keys(where, fields, _SNAPSHOT_ALL_KEYS, _SNAPSHOT_KEYS, "snapshot")
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
    amount = _parse_amount(value)
    if amount is None:
        raise RewardsInputError(f"{where}: {field} must be a decimal string of wei (uint256), got {value!r}")
    return amount


def _history(where: str, history: list[Any]) -> tuple[int, ...]:
    amounts = tuple(map(_parse_amount, history))
    if None in amounts:  # name the first bad entry
        position = amounts.index(None)
        _amount(where, f"state.history[{position}]", history[position])
    return amounts  # type: ignore[return-value]  # no None left


def _parse_amount(value: Any) -> int | None:
    # Canonical decimal only (int() would also take "+5", " 5", "5_000" and non-ASCII digits), at most
    # 78 digits so int() never meets a huge string, and within uint256.
    if (
        type(value) is str
        and value.isascii()
        and value.isdigit()
        and len(value) <= 78
        and (value[0] != "0" or len(value) == 1)
    ):
        amount = int(value)
        if amount <= UINT256_MAX:
            return amount
    return None


def _flag(where: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RewardsInputError(f"{where}: {field} must be a JSON boolean, got {value!r}")
    return value


def _multiplier(where: str, value: Any) -> Fraction:
    numerator, _, denominator = value.partition("/") if isinstance(value, str) else ("", "", "")
    num, den = _parse_amount(numerator), _parse_amount(denominator)
    if num is None or den is None:
        raise RewardsInputError(f'{where}: snapshot.multiplier must be a "num/den" string, got {value!r}')
    if math.gcd(num, den) != 1:  # also refuses a zero denominator: gcd(n, 0) = n, and 0/0
        raise RewardsInputError(f"{where}: snapshot.multiplier must be in lowest terms, got {value!r}")
    if num < den:
        raise RewardsInputError(f"{where}: snapshot.multiplier must be at least 1/1, got {value!r}")
    return Fraction(num, den)
