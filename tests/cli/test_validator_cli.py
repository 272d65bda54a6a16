"""`dolphin validator challenge-wallets`: the addresses an operator funds, the same at every start."""

import json
import stat

import pytest
from click.testing import CliRunner

from cli.main import main
from protocols.eth import EthAccount
from validator.challenge_wallets import challenge_accounts

pytestmark = pytest.mark.unit


def test_the_challenge_wallets_are_listed_from_the_seed_the_validator_uses(tmp_path):
    listed = CliRunner().invoke(main, ["validator", "challenge-wallets", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    addresses = listed.output.split()
    seed_file = tmp_path / "challenge.key"
    assert stat.S_IMODE(seed_file.stat().st_mode) == 0o600  # written at the first call, private
    seed = bytes.fromhex(seed_file.read_text().strip().removeprefix("0x"))
    assert len(addresses) == 16 == len(set(addresses))
    assert addresses == ["0x" + account.address.hex() for account in challenge_accounts(seed, 16)]
    assert addresses[0] == "0x" + EthAccount(seed).address.hex()  # wallet 0 is the seed's own key
    again = CliRunner().invoke(
        main, ["validator", "challenge-wallets", "--data-dir", str(tmp_path), "--count", "3", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == addresses[:3]  # the seed is kept: the same wallets


def test_an_unusable_seed_is_named_with_what_is_wrong(tmp_path):
    (tmp_path / "challenge.key").write_text("not hex\n")
    result = CliRunner().invoke(main, ["validator", "challenge-wallets", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "challenge wallet seed" in result.output and "challenge.key" in result.output


def test_the_listing_reads_the_seed_and_count_the_daemon_reads_from_its_config(tmp_path):
    # An operator who keeps the seed outside the data dir: the listing must be the daemon's wallets, not
    # a fresh seed's written under the data dir.
    seed_file = tmp_path / "secrets" / "challenge.key"
    seed_file.parent.mkdir()
    seed_file.write_text("0x" + "11" * 32 + "\n")
    seed_file.chmod(0o600)
    data_dir = tmp_path / "validator"
    data_dir.mkdir()
    (data_dir / "validator.toml").write_text(f'challenge_key_file = "{seed_file}"\nchallenge_wallets = 5\n')
    listed = CliRunner().invoke(
        main, ["validator", "challenge-wallets", "--data-dir", str(data_dir), "--json"]
    )
    assert listed.exit_code == 0, listed.output
    expected = ["0x" + account.address.hex() for account in challenge_accounts(bytes([0x11] * 32), 5)]
    assert json.loads(listed.output) == expected
    assert not (data_dir / "challenge.key").exists()
    # --count still beats the file.
    fewer = CliRunner().invoke(
        main, ["validator", "challenge-wallets", "--data-dir", str(data_dir), "--count", "2", "--json"]
    )
    assert json.loads(fewer.output) == expected[:2]
