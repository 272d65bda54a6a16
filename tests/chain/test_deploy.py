"""chain.deploy: the whole system on a fresh Anvil, its wiring, the deployment file, second deploys."""

import json
from dataclasses import replace

import pytest
from eth_account import Account

from chain.client import ChainClient
from chain.deploy import (
    CONTRACT_NAMES,
    Deployment,
    DeploymentError,
    DeploymentExists,
    DeployParams,
    deploy_system,
    load_deployment,
)
from chain.devchain import open_devchain
from chain.testing import open_deployed_chain
from chain.transactions import connect

POD = 10**18


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with open_deployed_chain(tmp_path_factory.mktemp("deploy")) as chain:
        yield chain


@pytest.fixture(scope="module")
def reader(deployed):
    return ChainClient(deployed.rpc_url, deployed.deployment)


@pytest.mark.integration
def test_the_file_records_every_contract_with_code_on_this_chain(deployed):
    recorded = load_deployment(deployed.path)
    assert recorded == deployed.deployment
    assert recorded.chain_id == deployed.w3.eth.chain_id
    assert recorded.genesis_hash == "0x" + bytes(deployed.w3.eth.get_block(0)["hash"]).hex()
    assert 0 < recorded.first_block <= recorded.block <= deployed.w3.eth.block_number
    assert set(recorded.addresses) == set(CONTRACT_NAMES)
    for name in CONTRACT_NAMES:
        assert deployed.w3.eth.get_code(recorded.address(name)), name
    assert recorded.deployer == Account.from_key(deployed.keys[0]).address


@pytest.mark.integration
def test_governance_holds_every_admin_role_and_the_deployer_none(deployed, reader):
    deployer = deployed.deployment.deployer
    timelock = deployed.deployment.address("DolphinTimelock")
    for name in ("StakedPOD", "Bonding", "ValidatorQuorum", "Slashing", "Buyback", "RewardsDistributor"):
        admin = reader.call(name, "DEFAULT_ADMIN_ROLE")
        assert reader.call(name, "hasRole", admin, timelock), name
        assert not reader.call(name, "hasRole", admin, deployer), name
    for name in ("Bonding", "ValidatorQuorum", "Slashing"):
        role = reader.call(name, "PARAMETERS_ROLE")
        assert reader.call(name, "hasRole", role, timelock) and not reader.call(
            name, "hasRole", role, deployer
        )
    assert reader.call("Credits", "owner") == timelock
    assert reader.call("ParamsRegistry", "owner") == timelock
    # The contracts' own roles, wired as tests/contracts/conftest.py does.
    bonding, slashing = deployed.deployment.address("Bonding"), deployed.deployment.address("Slashing")
    assert reader.call("StakedPOD", "hasRole", reader.call("StakedPOD", "COOLDOWN_EXEMPT_ROLE"), bonding)
    assert reader.call("Bonding", "hasRole", reader.call("Bonding", "SLASHER_ROLE"), slashing)
    assert reader.call(
        "Buyback", "hasRole", reader.call("Buyback", "KEEPER_ROLE"), deployed.deployment.keeper
    )
    revoker = reader.call("RewardsDistributor", "REVOKER_ROLE")
    assert reader.call("RewardsDistributor", "hasRole", revoker, timelock)
    assert reader.call("RewardsDistributor", "hasRole", revoker, deployed.deployment.guardian)
    assert reader.call("Credits", "revenueRecipient") == deployed.deployment.address("Buyback")


@pytest.mark.integration
def test_timelock_is_governed_by_the_governor_alone(deployed):
    from chain.artifacts import load_artifact

    timelock = deployed.w3.eth.contract(
        address=deployed.deployment.address("DolphinTimelock"), abi=load_artifact("DolphinTimelock").abi
    )
    governor = deployed.deployment.address("DolphinGovernor")
    admin = timelock.functions.DEFAULT_ADMIN_ROLE().call()
    assert timelock.functions.hasRole(timelock.functions.PROPOSER_ROLE().call(), governor).call()
    assert not timelock.functions.hasRole(admin, deployed.deployment.deployer).call()
    assert timelock.functions.getMinDelay().call() == DeployParams().timelock_delay


@pytest.mark.integration
def test_supply_liquidity_and_demo_funds(deployed, reader):
    params = DeployParams()
    deployment = deployed.deployment
    assert reader.call("POD", "balanceOf", deployment.address("RewardsDistributor")) == params.rewards_supply
    reserves = reader.call("UniswapV2Pair", "getReserves")
    assert sorted(reserves[:2]) == sorted([params.pool_pod, params.pool_usd])
    assert len(deployment.demo_accounts) == len(deployed.keys) - 1
    for address in deployment.demo_accounts:
        assert reader.call("POD", "balanceOf", address) == params.demo_pod
        assert reader.call("LocalStablecoin", "balanceOf", address) == params.demo_usd
        assert deployed.w3.eth.get_balance(address) >= params.demo_min_eth
    # Nothing stays with the deployer: the rest of the treasury went to the timelock.
    assert reader.call("POD", "balanceOf", deployment.deployer) == 0
    treasury = params.treasury_supply - params.pool_pod - params.demo_pod * len(deployment.demo_accounts)
    assert reader.call("POD", "balanceOf", deployment.address("DolphinTimelock")) == treasury


@pytest.mark.integration
def test_a_second_deploy_is_refused_and_the_file_kept(deployed):
    before = deployed.path.read_text()
    block = deployed.w3.eth.block_number
    with pytest.raises(DeploymentExists, match="already has a Dolphin deployment.*--reuse"):
        deploy_system(deployed.w3, deployed.keys[0], path=deployed.path)
    assert deployed.path.read_text() == before
    assert deployed.w3.eth.block_number == block  # nothing was sent


@pytest.mark.integration
def test_reuse_checks_and_returns_the_recorded_deployment(deployed):
    assert deploy_system(deployed.w3, deployed.keys[0], path=deployed.path, reuse=True) == deployed.deployment


@pytest.mark.integration
def test_a_recorded_address_without_code_is_reported_not_papered_over(deployed, tmp_path):
    broken = replace(
        deployed.deployment,
        addresses=dict(deployed.deployment.addresses) | {"Credits": "0x" + "ab" * 20},
    )
    path = tmp_path / "deployment.json"
    broken.save(path)
    with pytest.raises(DeploymentError, match="Credits have no code; remove the file"):
        deploy_system(deployed.w3, deployed.keys[0], path=path, reuse=True)


@pytest.mark.integration
def test_a_file_from_an_earlier_chain_is_replaced(tmp_path):
    with open_devchain(accounts=2) as dev:
        w3 = connect(dev.rpc_url)
        path = tmp_path / "deployment.json"
        first = deploy_system(w3, dev.private_keys[0], path=path)
        stale = replace(first, genesis_hash="0x" + "00" * 32)
        stale.save(path)
        # Same chain id and addresses, other genesis: the file speaks of a chain that is gone.
        second = deploy_system(w3, dev.private_keys[0], path=path)
        assert second.addresses["POD"] != first.addresses["POD"]
        assert load_deployment(path) == second


@pytest.mark.integration
def test_a_failing_step_is_named_and_nothing_is_recorded(tmp_path):
    with open_devchain(accounts=2) as dev:
        w3 = connect(dev.rpc_url)
        path = tmp_path / "deployment.json"
        # ValidatorQuorum's constructor refuses a quorum of 1%: the step after staking fails.
        with pytest.raises(DeploymentError) as failure:
            deploy_system(w3, dev.private_keys[0], path=path, params=DeployParams(validator_quorum_bps=100))
        message = str(failure.value)
        assert "step 8/14 (validator quorum and slashing)" in message
        assert "ValidatorQuorumParameterOutOfBounds(100, 5001, 10000)" in message
        assert "Nothing was recorded" in message
        assert not path.exists()


@pytest.mark.integration
def test_progress_reports_every_step_in_order(tmp_path):
    seen = []
    with open_devchain(accounts=2) as dev:
        deploy_system(
            connect(dev.rpc_url), dev.private_keys[0], on_step=lambda i, n, text: seen.append((i, n, text))
        )
    assert [i for i, _, _ in seen] == list(range(14))
    assert {n for _, n, _ in seen} == {14}
    assert seen[0][2] == "POD token" and "timelock" in seen[-1][2]


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "not json",
        json.dumps({"format": "something-else"}),
        json.dumps({"format": "dolphin-deployment-v1", "chain_id": 1}),
    ],
)
def test_a_malformed_deployment_file_is_refused(text):
    with pytest.raises(DeploymentError, match="not a Dolphin deployment file"):
        Deployment.from_json(text)


@pytest.mark.unit
def test_a_missing_deployment_file_says_how_to_get_one(tmp_path):
    with pytest.raises(DeploymentError, match="run `dolphin chain deploy` first"):
        load_deployment(tmp_path / "nope.json")
