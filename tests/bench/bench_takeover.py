"""The cheapest takeover of the validator quorum, simulated with the election itself (validator.election).

An attacker bonds POD in one or many accounts, runs registered nodes for the 13 weeks of earnings history
eligibility needs, and opts in; the honest side is the genesis set plus some elected validators. Each
scenario runs successive elections until the attacker holds 2/3 of the weight (a quorum) or a horizon
passes, and reports the epochs that took (after the 13 weeks; a new set's weight then waits
ValidatorQuorum.SET_CHANGE_WAIT more before it can debit or slash). The smallest bond that reaches a
quorum is found by a search in steps of the minimum bond. docs/contracts.md carries the table."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from chain.address import checked_address
from chain.client import ValidatorSet
from chain.rewards import POD
from validator.election import Candidate, elect

MIN_BOND = 100_000 * POD
QUORUM = Fraction(2, 3)
HORIZON = 200
GENESIS = ValidatorSet.of({checked_address(f"0x{n:040x}"): 1 for n in (1, 2, 3)})


def _address(n: int) -> str:
    return checked_address(f"0x{n:040x}")


def epochs_to_quorum(honest: list[int], attacker: list[int]) -> int | None:
    """Epochs of elections until the `attacker` accounts (bonds in wei) hold a quorum against `honest`
    elected validators (bonds) and the genesis set; None within HORIZON epochs."""
    candidates = [Candidate(_address(100 + n), True, True, b) for n, b in enumerate(honest)]
    owned = {_address(10_000 + n) for n in range(len(attacker))}
    candidates += [Candidate(_address(10_000 + n), True, True, b) for n, b in enumerate(attacker)]
    current = GENESIS
    for epoch in range(1, HORIZON + 1):
        current = elect(candidates, current, epoch=epoch)
        weights = dict(zip(current.members, current.weights, strict=True))
        if Fraction(sum(w for a, w in weights.items() if a in owned), current.total) >= QUORUM:
            return epoch
    return None


def cheapest(honest: list[int], accounts: int, limit: int = 200) -> tuple[int, int] | None:
    """The smallest attacker bond (a multiple of MIN_BOND, split evenly over `accounts` accounts of at
    least the minimum each) that reaches a quorum, with the epochs it takes; None up to `limit` × MIN_BOND."""
    # Below twice the honest bond the attacker's target weight is under 2/3 (election's docstring).
    for units in range(max(accounts, 2 * sum(honest) // MIN_BOND), limit + 1):
        bond = units * MIN_BOND
        epochs = epochs_to_quorum(honest, [bond // accounts] * accounts)
        if epochs is not None:
            return bond, epochs
    return None


def scenarios() -> list[dict]:
    rows = []

    def fixed(name: str, honest: list[int], attacker: list[int]) -> None:
        epochs = epochs_to_quorum(honest, attacker)
        rows.append(
            {
                "scenario": name,
                "honest_elected_pod": sum(honest) // POD,
                "attacker_pod": sum(attacker) // POD,
                "attacker_accounts": len(attacker),
                "epochs_to_quorum": epochs,
            }
        )

    def search(name: str, honest: list[int], accounts: int) -> None:
        found = cheapest(honest, accounts)
        rows.append(
            {
                "scenario": name,
                "honest_elected_pod": sum(honest) // POD,
                "attacker_pod": found[0] // POD if found else None,
                "attacker_accounts": accounts,
                "epochs_to_quorum": found[1] if found else None,
            }
        )

    fixed("one minimum-bond account, nobody else elected", [], [MIN_BOND])
    fixed("seven minimum-bond accounts, nobody else elected", [], [MIN_BOND] * 7)
    fixed("one account with 100M POD against 10 x 300k honest", [3 * MIN_BOND] * 10, [1000 * MIN_BOND])
    third = 3 * MIN_BOND * 10 // 2 - 1  # just under a third of all elected bond
    fixed(
        "just under 1/3 of the bond in 30 accounts, 10 x 300k honest", [3 * MIN_BOND] * 10, [third // 30] * 30
    )
    search("cheapest, nobody else elected (7 accounts)", [], 7)
    search("cheapest against 10 x 300k honest (20 accounts)", [3 * MIN_BOND] * 10, 20)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| scenario | honest elected POD | attacker POD | accounts | epochs to a quorum |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        epochs = row["epochs_to_quorum"]
        pod = f"{row['attacker_pod']:,}" if row["attacker_pod"] is not None else "-"
        reached = epochs if epochs is not None else f"never (> {HORIZON})"
        honest = f"{row['honest_elected_pod']:,}"
        lines.append(f"| {row['scenario']} | {honest} | {pod} | {row['attacker_accounts']} | {reached} |")
    return "\n".join(lines)


def run(out: Path) -> dict:
    rows = scenarios()
    table = markdown(rows)
    (out / "takeover.md").write_text(table + "\n")
    print(table)
    return {"scenarios": rows, "horizon_epochs": HORIZON}
