"""The local dev chain: Anvil on a free port, deployments from compiled artifacts, decoded reverts."""

import pytest
from eth_account import Account
from web3 import Web3

from chain.artifacts import ArtifactError, ContractRevert, load_artifact
from chain.devchain import DEV_MNEMONIC, dev_private_keys, open_devchain
from chain.transactions import deploy_contract as deploy

ZERO = "0x" + "00" * 20


@pytest.mark.integration
def test_anvil_starts_on_a_free_port_and_deploys_pod():
    with open_devchain(accounts=3) as first, open_devchain(accounts=3) as second:
        assert first.rpc_url != second.rpc_url  # two chains side by side: no fixed port
        w3 = Web3(Web3.HTTPProvider(first.rpc_url))
        assert w3.eth.chain_id == first.chain_id
        owner = Account.from_key(first.private_keys[0])
        pool = Account.from_key(first.private_keys[1])
        pod = deploy(w3, owner, "POD", owner.address, 5 * 10**18, pool.address, 7 * 10**18)
        assert pod.functions.totalSupply().call() == 12 * 10**18
        assert pod.functions.balanceOf(pool.address).call() == 7 * 10**18

        with pytest.raises(ContractRevert, match="PODInvalidRecipient") as exc:
            deploy(w3, owner, "POD", owner.address, 1, ZERO, 1)
        assert exc.value.error == "PODInvalidRecipient"
    assert first.process.poll() is not None  # stopped on exit


@pytest.mark.unit
def test_dev_keys_are_anvils_well_known_accounts():
    assert "junk" in DEV_MNEMONIC
    first = Account.from_key(dev_private_keys(1)[0])
    assert first.address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.mark.unit
def test_missing_artifact_says_how_to_build_it():
    with pytest.raises(ArtifactError, match="make setup"):
        load_artifact("NoSuchContract")
