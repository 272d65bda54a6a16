"""`dolphin demo` on the tiny model, as `make demo` runs it on SmolLM2: every part its own process, the
cheater caught and slashed, two epochs settled and claimed, revenue bought back; then its summary is
checked against the chain it ran on (a dev chain this test starts, so it outlives the demo)."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from chain.client import ChainClient
from chain.deploy import load_deployment
from chain.devchain import open_devchain
from cli.demo import CHEATER_KEY, OPERATOR_KEY, USER_CREDIT, USER_KEY

pytestmark = [pytest.mark.chain, pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]


def _still_running(marker: str) -> list[str]:
    """Command lines of live processes that name `marker` (the demo's work dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command and "pytest" not in command:
                found.append(command)
    return found


def _price(text: str) -> Fraction:
    numerator, _, denominator = text.partition("/")
    return Fraction(int(numerator), int(denominator))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_demo_tells_the_whole_story_and_its_summary_matches_the_chain(tmp_path):
    work_dir, summary_file = tmp_path / "demo", tmp_path / "summary.json"
    with open_devchain() as dev:
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "demo", "--model", "tiny", "--work-dir", str(work_dir),
             "--summary-json", str(summary_file), "--rpc-url", dev.rpc_url, "--keep-logs"],
            cwd=ROOT, capture_output=True, text=True, timeout=840, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-6000:]
        assert "\r" not in result.stdout  # not a terminal: no progress-bar redraws
        summary = json.loads(summary_file.read_text())
        assert summary["steps_failed"] == []
        # Nothing left running.
        assert _still_running(str(work_dir)) == []
        [deployment_file] = work_dir.glob("run-*/chain/deployment-*.json")
        deployment = load_deployment(deployment_file)
        reader, operator, cheater_operator, user = (
            ChainClient(dev.rpc_url, deployment, dev.private_keys[index])
            for index in (0, OPERATOR_KEY, CHEATER_KEY, USER_KEY)
        )
        operator, cheater_operator, user = operator.address, cheater_operator.address, user.address

        assert summary["answer"].strip()
        assert summary["processes"] == 7  # relay, two validators, three nodes, the gateway (not this chain)
        # The cheater: struck and banned by the validators, slashed on chain by exactly what it says.
        cheater = summary["cheater"]
        assert cheater["struck"] and cheater["banned"] and cheater["peer_id"].startswith("12D3KooW")
        [executed] = reader.events("Slashing", "StrikeExecuted", {"offender": cheater_operator})
        slashed = reader.call(
            "StakedPOD", "convertToAssets", executed["args"]["shares"], block=executed["blockNumber"]
        )
        assert cheater["slashed_pod"] == str(slashed) and slashed > 0
        assert not reader.events("Slashing", "StrikeExecuted", {"offender": operator})  # honest: never
        # The user paid exactly what Credits debited, over the demo's two epochs.
        debits = reader.events("Credits", "Debited", {"user": user})
        assert len(debits) == 2
        assert summary["credits_debited"] == str(sum(e["args"]["amount"] for e in debits))
        assert int(summary["credits_debited"]) == USER_CREDIT - reader.call("Credits", "creditOf", user) > 0
        # The operator's claims, liquid then bonded with the bonus.
        [liquid] = reader.events("RewardsDistributor", "Claimed", {"account": operator})
        [bonded] = reader.events("RewardsDistributor", "ClaimedBonded", {"account": operator})
        assert summary["claims"] == {
            "liquid": str(liquid["args"]["amount"]),
            "bonded": str(bonded["args"]["amount"]),
            "bonus": str(bonded["args"]["bonus"]),
        }
        assert liquid["args"]["amount"] > 0 and bonded["args"]["bonus"] > 0
        # The buyback and the share price it raised.
        status = reader.money_status()
        assert summary["buyback_pod"] == str(status.pod_bought_back) and status.pod_bought_back > 0
        assert _price(summary["stkpod_price_after"]) == Fraction(status.share_price, 10**24)
        assert _price(summary["stkpod_price_after"]) > _price(summary["stkpod_price_before"])
        # The story, as a newcomer reads it.
        for line in (
            "across the relay",
            "struck, banned and slashed",
            "claimed",
            "bought back",
            "stopped all",
        ):
            assert line in output
