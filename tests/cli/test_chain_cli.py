"""`dolphin chain`: deploy, then stake -> bond -> validators join -> root sign/propose/activate -> claim
liquid and bonded, unbonding, credits and the epoch snapshot, all through the commands; errors with hints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from chain.address import checked_address
from chain.devchain import dev_private_keys, open_devchain, time_travel
from chain.merkle import RewardsTree
from chain.testing import unserved_rpc_url
from chain.transactions import connect
from cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.chain, pytest.mark.process]

REPO = Path(__file__).resolve().parents[2]
DAY = 86400


class Chain:
    """A dev chain, a data dir and one key file per dev account, with a runner bound to them."""

    def __init__(self, rpc_url: str, data_dir: Path):
        self.rpc_url = rpc_url
        self.data_dir = data_dir
        self.w3 = connect(rpc_url)
        self.keys = dev_private_keys(10)
        self.addresses = [Account.from_key(key).address for key in self.keys]
        self.key_files = []
        for i, key in enumerate(self.keys):
            path = data_dir / f"key{i}"
            path.write_text(key + "\n")
            path.chmod(0o600)
            self.key_files.append(path)

    def run(self, *args: str, key: int | None = None, expect: int = 0, input: bytes | None = None):
        """Invoke `dolphin chain ARGS` (signing with dev account `key`); check the exit code."""
        command = ["chain", *args] + (["--key-file", str(self.key_files[key])] if key is not None else [])
        env = {"DOLPHIN_RPC_URL": self.rpc_url, "DOLPHIN_DATA_DIR": str(self.data_dir)}
        result = CliRunner().invoke(main, command, env=env, input=input)
        assert result.exit_code == expect, (command, result.output, result.exception)
        for key_text in self.keys:  # no command ever shows a key
            assert key_text.removeprefix("0x") not in result.output
        return result.output


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("chain-cli")
    with open_devchain() as dev:
        chain = Chain(dev.rpc_url, data_dir)
        output = chain.run("deploy", "--rpc-url", dev.rpc_url)
        assert f"written to {data_dir / 'deployment-31337.json'}" in output
        assert "Genesis validators staked and bonded 150,000 POD each" in output
        yield chain


def test_deploy_lists_every_contract_and_funds_nine_demo_accounts(chain):
    document = json.loads((chain.data_dir / "deployment-31337.json").read_text())
    assert document["demo_accounts"] == chain.addresses[1:]
    assert document["deployer"] == chain.addresses[0]
    for name, address in document["addresses"].items():
        assert chain.w3.eth.get_code(address), name


def test_a_second_deploy_is_refused_and_reuse_checks_it(chain):
    refused = chain.run("deploy", "--rpc-url", chain.rpc_url, expect=1)
    assert "already has a Dolphin deployment" in refused and "--reuse" in refused
    reused = chain.run("deploy", "--rpc-url", chain.rpc_url, "--reuse")
    assert "Reusing the deployment on chain 31337" in reused and "Funded" not in reused


def test_round_trip_stake_bond_settle_and_claim(chain, tmp_path):
    operator, validators = 4, (1, 2, 3)
    shown = chain.run("validators", "show")
    assert "3 validators (genesis set); quorum 2/3 of the weight" in shown
    assert all(chain.addresses[v] in shown for v in validators)
    for validator in validators:  # `chain deploy` on a dev chain staked, bonded and opted them in
        status = chain.run("status", key=validator)
        assert "= 150,000 POD" in status and "not joined" not in status, status
    chain.run("stake", "20000", key=operator)
    assert "active bond now 20,000 POD" in chain.run("bond", "20000", key=operator)
    status = chain.run("status", key=operator)
    assert "active bond" in status and "= 20,000 POD" in status and "not joined" in status

    # The settler's tree for epoch 1: the operator earned 100 POD, a validator 50.
    tree = RewardsTree.build({chain.addresses[operator]: 100 * 10**18, chain.addresses[1]: 50 * 10**18})
    tree_file = tmp_path / "tree.json"
    tree_file.write_text(tree.to_json())
    deadline = str(chain.w3.eth.get_block("latest")["timestamp"] + 3600)
    root = ["--tree", str(tree_file), "--epoch", "1", "--deadline", deadline]
    signatures = [chain.run("root", "sign", *root, key=v).strip() for v in validators]
    assert all(len(s) == 132 for s in signatures)
    signature_options = [option for s in reversed(signatures) for option in ("--signature", s)]
    assert "activate it from" in chain.run("root", "propose", *root, *signature_options, key=operator)

    locked = chain.run("root", "activate", "1", key=operator, expect=1)
    assert "RewardsDistributorRootLocked" in locked and "can be activated from" in locked
    time_travel(chain.w3, 2 * DAY)
    activated = chain.run("root", "activate", "1", key=operator)
    assert "Activated the root of epoch 1; 3 validators now sign." in activated
    assert "3 validators (elected with the root of epoch 1)" in chain.run("validators", "show")

    pod_before = chain.run("status", key=operator)
    assert "Claimed 100 POD." in chain.run("claim", "--tree", str(tree_file), key=operator)
    assert pod_before != chain.run("status", key=operator)
    bonded = chain.run("claim", "--tree", str(tree_file), "--bonded", key=1)
    assert "Claimed 50 POD plus a 5 POD bonus, bonded as" in bonded
    assert "active root epoch 1" in chain.run("status", key=1)
    again = chain.run("claim", "--tree", str(tree_file), key=operator, expect=1)
    assert "nothing to claim" in again


def test_unbond_and_withdraw_after_the_thaw(chain):
    account = 5
    chain.run("stake", "3000", key=account)
    chain.run("bond", key=account)
    unbond = chain.run("unbond", "1000", key=account)
    assert "Unbond request" in unbond and "then run `dolphin chain withdraw`" in unbond
    early = chain.run("withdraw", key=account, expect=1)
    assert "has thawed" in early
    time_travel(chain.w3, 90 * DAY + 1)
    assert "Withdrew unbond request" in chain.run("withdraw", key=account)


def test_redeem_needs_a_cooldown_and_says_so(chain):
    account = 6
    chain.run("stake", "10", key=account)
    refused = chain.run("redeem", key=account, expect=1)
    assert "StakedPODNoCooldown" in refused and "run `dolphin chain cooldown`, wait 90 days" in refused
    assert "Cooldown started" in chain.run("cooldown", key=account)
    early = chain.run("redeem", key=account, expect=1)
    assert "StakedPODCooldownNotFinished" in early and "Your cooldown ends at" in early
    time_travel(chain.w3, 90 * DAY + 1)
    assert "Redeemed 10 POD." in chain.run("redeem", key=account)


def test_credits_deposit_and_withdraw(chain, tiny_model_dir):
    account = 7
    assert "credit now 100" in chain.run("credits", "deposit", "100", key=account)
    # Crediting another address (a validator's challenge wallet): the key pays, the address is credited.
    wallet = "0x" + "5a" * 20
    funded = chain.run("credits", "deposit", "7", "--for", wallet, key=account)
    assert f"{checked_address(wallet)}'s credit now 7" in funded
    refused = chain.run("credits", "deposit", "7", "--for", "0x12", key=account, expect=1)
    assert "not an Ethereum address" in refused
    assert "Withdrawal of 40 requested" in chain.run("credits", "withdraw", "40", key=account)
    locked = chain.run("credits", "withdraw", key=account, expect=1)
    assert "CreditsWithdrawalLocked" in locked and "Your withdrawal unlocks at" in locked
    time_travel(chain.w3, 3 * DAY)
    assert "Withdrew 40." in chain.run("credits", "withdraw", key=account)
    status = chain.run("status", key=account)
    assert "credit       60" in status
    assert "network      revenue 0 lUSD, 0 awaiting buyback" in status
    assert "POD bought back 0 POD; 1 stkPOD = 1 POD" in status
    assert chain.run("credits", "price", "ab" * 32, key=account).strip() == "0.5 per million tokens"
    assert "a model id is 64 hex digits" in chain.run("credits", "price", "abc", key=account, expect=2)
    by_folder = chain.run("credits", "price", str(tiny_model_dir), key=account)  # its manifest's id
    assert by_folder.strip() == "0.5 per million tokens"


def test_snapshot_feeds_rewards_close_epoch(chain, tmp_path):
    chain.run("stake", "2000", key=8)
    chain.run("bond", key=8)
    block = chain.w3.eth.block_number
    time_travel(chain.w3, 1)
    rewards = tmp_path / "rewards.json"
    rewards.write_text(json.dumps({chain.addresses[8]: str(7 * 10**18)}))
    document = chain.run("snapshot", "--block", str(block), "--base-rewards", str(rewards))
    accounts = json.loads(document)["accounts"]
    assert accounts[chain.addresses[8]]["input"]["base_reward"] == str(7 * 10**18)
    assert int(accounts[chain.addresses[8]]["input"]["active_bond"]) > 1_999 * 10**18
    closed = CliRunner().invoke(main, ["rewards", "close-epoch"], input=document.encode())
    assert closed.exit_code == 0, closed.output
    assert json.loads(closed.output)["accounts"][chain.addresses[8]]["reward"] == str(7 * 10**18)


def test_a_transaction_without_a_key_says_which_option_is_missing(chain):
    assert "--key-file" in chain.run("stake", "1", expect=1)


def test_a_bad_amount_is_refused_before_anything_is_sent(chain):
    assert "at most 18 decimals" in chain.run("stake", "0.0000000000000000001", key=9, expect=1)


def test_a_malformed_address_is_a_clear_error(chain):
    assert "not an Ethereum address" in chain.run("status", "--account", "0x1234", expect=1)


def test_a_chain_that_is_down_gives_a_clear_error(chain):
    url = unserved_rpc_url()
    output = chain.run("status", "--rpc-url", url, "--account", chain.addresses[1], expect=1)
    assert url in output and "does not answer" in output and "check that the node is running" in output


def test_a_missing_deployment_file_says_to_deploy(chain, tmp_path):
    output = chain.run("status", "--data-dir", str(tmp_path), "--account", chain.addresses[1], expect=1)
    assert "run `dolphin chain deploy` first" in output


def test_deploy_without_a_url_serves_its_own_chain_until_interrupted(tmp_path):
    """`dolphin chain deploy` starts Anvil, writes ready.json, serves until SIGINT, then cleans up."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "chain",
            "deploy",
            "--data-dir",
            str(tmp_path),
            "--demo-accounts",
            "2",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ | {"DOLPHIN_RPC_URL": ""},
    )
    try:
        ready = tmp_path / "ready.json"
        deadline = time.monotonic() + 120
        while not ready.is_file():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "no ready.json within 120 s"
            time.sleep(0.2)
        info = json.loads(ready.read_text())
        assert info["rpc_url"].startswith("http://127.0.0.1:") and not info["rpc_url"].endswith(":8545")
        assert Path(info["deployment"]) == tmp_path / "deployment-31337.json"
        # Other commands find the chain through ready.json alone.
        result = CliRunner().invoke(
            main,
            ["chain", "status", "--account", dev_address(1)],
            env={"DOLPHIN_DATA_DIR": str(tmp_path), "DOLPHIN_RPC_URL": ""},
        )
        assert result.exit_code == 0, result.output
        assert "POD          1,000,000" in result.output
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "Stopped the chain." in output
    assert not (tmp_path / "ready.json").exists()


def test_deploy_beyond_a_dev_chain_wants_every_power_named(tmp_path):
    """Medium finding: on any chain, `dolphin chain deploy` wired the open-mint LocalStablecoin and kept
    the keeper and guardian on the deployer's key."""
    with open_devchain(chain_id=4242, accounts=2) as dev:
        chain = Chain(dev.rpc_url, tmp_path)
        no_genesis = chain.run("deploy", "--rpc-url", dev.rpc_url, key=0, expect=1)
        assert "name the genesis set with --genesis-validator" in no_genesis
        named = ["--genesis-validator", chain.addresses[1]]
        refused = chain.run("deploy", "--rpc-url", dev.rpc_url, *named, key=0, expect=1)
        assert "chain 4242 is not a dev chain: name the payment token, keeper, guardian" in refused
        assert chain.w3.eth.block_number == 0  # nothing was sent


def dev_address(index: int) -> str:
    return Account.from_key(dev_private_keys(index + 1)[index]).address


def _deploy_process(data_dir: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli.main", "chain", "deploy", "--data-dir", str(data_dir), *args]
    return subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ | {"DOLPHIN_RPC_URL": ""},
    )


@pytest.mark.process
@pytest.mark.chain
def test_a_dev_profile_chain_mines_on_its_own_hands_out_keys_and_keeps_its_dir(tmp_path):
    """A dev chain that mined only on transactions never passed an epoch's end by itself (validators
    waited forever for a later block); its root delay was two days with no way past; no guide said where a
    funded key comes from; a second deploy into the same dir clobbered the first one's ready.json."""
    process = _deploy_process(tmp_path, "--profile", "dev")
    try:
        ready = tmp_path / "ready.json"
        deadline = time.monotonic() + 180
        while not ready.is_file():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "no ready.json within 180 s"
            time.sleep(0.2)
        info = json.loads(ready.read_text())
        deployment = json.loads(Path(info["deployment"]).read_text())
        assert deployment["params"]["root_delay"] == 3600  # RewardsDistributor.MIN_ROOT_DELAY
        w3 = connect(info["rpc_url"])
        first = w3.eth.block_number
        time.sleep(3.5)
        assert w3.eth.block_number >= first + 2  # a block a second with no transaction sent
        keys = tmp_path / "keys"
        expected = {
            "operator": 4,
            "me": 5,
            "validator": 7,
            "validator-1": 1,
            "validator-2": 2,
            "validator-3": 3,
        }
        for role, index in expected.items():
            path = keys / f"{role}.key"
            assert path.stat().st_mode & 0o777 == 0o600, role
            assert Account.from_key(path.read_text().strip()).address == dev_address(index)
        env = {"DOLPHIN_DATA_DIR": str(tmp_path), "DOLPHIN_RPC_URL": ""}
        status = CliRunner().invoke(
            main, ["chain", "status", "--key-file", str(keys / "operator.key")], env=env
        )
        assert status.exit_code == 0 and "POD          1,000,000" in status.output, status.output
        before = w3.eth.get_block("latest")["timestamp"]
        moved = CliRunner().invoke(main, ["chain", "advance", "3600"], env=env)
        assert moved.exit_code == 0 and "3600 s ahead" in moved.output, moved.output
        assert w3.eth.get_block("latest")["timestamp"] >= before + 3600
        second = _deploy_process(tmp_path)
        output = second.communicate(timeout=120)[0].decode()
        assert second.returncode == 1 and f"pid {process.pid}" in output, output
        assert ready.is_file() and json.loads(ready.read_text()) == info
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "Dev keys (funded, test funds only)" in output


def test_advance_refuses_a_chain_that_is_not_a_dev_chain(tmp_path):
    with open_devchain(chain_id=1337) as dev:
        result = CliRunner().invoke(main, ["chain", "advance", "60", "--rpc-url", dev.rpc_url])
    assert result.exit_code == 1 and "chain 1337 is not a dev chain" in result.output
