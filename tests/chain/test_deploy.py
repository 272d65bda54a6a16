"""chain.deploy: the whole system on a fresh Anvil, its wiring (every power with the timelock or a named
account), the deployment file, second deploys, non-dev chains, and a governance vote passed on the
distribution a deployment actually produces."""

import json
from dataclasses import replace

import pytest
from eth_account import Account

from chain.artifacts import load_artifact, load_npm_artifact
from chain.client import ChainClient, bond_validators
from chain.deploy import (
    CONTRACT_NAMES,
    Deployment,
    DeploymentError,
    DeploymentExists,
    DeployParams,
    deploy_system,
    load_deployment,
)
from chain.devchain import dev_genesis_validators, open_devchain, time_travel
from chain.transactions import connect, deploy_contract, send

POD = 10**18
USD = 10**6


GENESIS = dev_genesis_validators()


@pytest.fixture(scope="module")
def deployed(module_deployed_chain):
    return module_deployed_chain


@pytest.fixture(scope="module")
def reader(deployed):
    return ChainClient(deployed.rpc_url, deployed.deployment)


@pytest.mark.chain
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


@pytest.mark.chain
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
    # The contracts' own wiring, as tests/contracts/conftest.py does it; the slasher and the installer of
    # validator sets are bound for good.
    address = deployed.deployment.address
    bonding, slashing = address("Bonding"), address("Slashing")
    assert reader.call("StakedPOD", "hasRole", reader.call("StakedPOD", "COOLDOWN_EXEMPT_ROLE"), bonding)
    assert reader.call("Bonding", "slasher") == slashing
    assert reader.call("ValidatorQuorum", "installer") == address("RewardsDistributor")
    assert reader.call("ValidatorQuorum", "params") == address("ParamsRegistry")
    assert reader.call(
        "Buyback", "hasRole", reader.call("Buyback", "KEEPER_ROLE"), deployed.deployment.keeper
    )
    revoker = reader.call("RewardsDistributor", "REVOKER_ROLE")
    assert reader.call("RewardsDistributor", "hasRole", revoker, timelock)
    assert reader.call("RewardsDistributor", "hasRole", revoker, deployed.deployment.guardian)
    assert reader.call("Credits", "revenueRecipient") == deployed.deployment.address("Buyback")


@pytest.mark.chain
def test_the_share_a_strike_decision_slashes_is_the_deployments(deployed, reader):
    assert reader.call("Slashing", "slashBps") == deployed.deployment.params["slash_bps"] == 5000


@pytest.mark.chain
def test_uniswap_powers_and_lp_tokens_belong_to_the_timelock(deployed, reader):
    """Medium finding: the LP tokens and the factory's feeToSetter stayed with the deployer's key."""
    deployment = deployed.deployment
    timelock = deployment.address("DolphinTimelock")
    factory = deployed.w3.eth.contract(
        address=deployment.address("UniswapV2Factory"),
        abi=load_npm_artifact("@uniswap/v2-core/build/UniswapV2Factory.json").abi,
    )
    assert factory.functions.feeToSetter().call() == timelock
    liquidity = reader.call("UniswapV2Pair", "balanceOf", timelock)
    assert liquidity > 0 and liquidity + 1000 == reader.call("UniswapV2Pair", "totalSupply")  # 1000: burned
    assert reader.call("UniswapV2Pair", "balanceOf", deployment.deployer) == 0


@pytest.mark.chain
def test_the_genesis_validator_set_is_the_named_one(deployed, reader):
    genesis = dev_genesis_validators()
    assert deployed.deployment.genesis_validators == {a: 1 for a in sorted(genesis, key=lambda a: int(a, 16))}
    current = reader.validator_set()
    assert set(current.members) == set(genesis) and current.weights == (1, 1, 1) and current.epoch == 0
    assert reader.call("ValidatorQuorum", "quorum") == [2, 3]


@pytest.mark.chain
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


@pytest.mark.chain
def test_supply_liquidity_and_demo_funds(deployed, reader):
    params = DeployParams()
    deployment = deployed.deployment
    assert reader.call("POD", "balanceOf", deployment.address("RewardsDistributor")) == params.rewards_supply
    reserves = reader.call("UniswapV2Pair", "getReserves")
    assert sorted(reserves[:2]) == sorted([params.pool_pod, params.pool_usd])
    assert len(deployment.demo_accounts) == len(deployed.keys) - 1
    for address in deployment.demo_accounts:
        assert reader.call("POD", "balanceOf", address) == params.demo_pod
        assert reader.call("PaymentToken", "balanceOf", address) == params.demo_usd
        assert deployed.w3.eth.get_balance(address) >= params.demo_min_eth
    # Nothing stays with the deployer: the rest of the treasury went to the timelock.
    assert reader.call("POD", "balanceOf", deployment.deployer) == 0
    treasury = params.treasury_supply - params.pool_pod - params.demo_pod * len(deployment.demo_accounts)
    assert reader.call("POD", "balanceOf", deployment.address("DolphinTimelock")) == treasury


@pytest.mark.chain
def test_a_second_deploy_is_refused_and_the_file_kept(deployed):
    before = deployed.path.read_text()
    block = deployed.w3.eth.block_number
    with pytest.raises(DeploymentExists, match="already has a Dolphin deployment.*--reuse"):
        deploy_system(deployed.w3, deployed.keys[0], genesis_validators=GENESIS, path=deployed.path)
    assert deployed.path.read_text() == before
    assert deployed.w3.eth.block_number == block  # nothing was sent


@pytest.mark.chain
def test_reuse_checks_and_returns_the_recorded_deployment(deployed):
    found = deploy_system(
        deployed.w3, deployed.keys[0], genesis_validators=GENESIS, path=deployed.path, reuse=True
    )
    assert found == deployed.deployment


@pytest.mark.chain
def test_a_recorded_address_without_code_is_reported_not_papered_over(deployed, tmp_path):
    broken = replace(
        deployed.deployment,
        addresses=dict(deployed.deployment.addresses) | {"Credits": "0x" + "ab" * 20},
    )
    path = tmp_path / "deployment.json"
    broken.save(path)
    with pytest.raises(DeploymentError, match="Credits have no code; remove the file"):
        deploy_system(deployed.w3, deployed.keys[0], genesis_validators=GENESIS, path=path, reuse=True)


@pytest.mark.chain
def test_a_file_from_an_earlier_chain_is_replaced(tmp_path):
    with open_devchain(accounts=2) as dev:
        w3 = connect(dev.rpc_url)
        path = tmp_path / "deployment.json"
        first = deploy_system(w3, dev.private_keys[0], genesis_validators=GENESIS, path=path)
        stale = replace(first, genesis_hash="0x" + "00" * 32)
        stale.save(path)
        # Same chain id and addresses, other genesis: the file speaks of a chain that is gone.
        second = deploy_system(w3, dev.private_keys[0], genesis_validators=GENESIS, path=path)
        assert second.addresses["POD"] != first.addresses["POD"]
        assert load_deployment(path) == second


@pytest.mark.chain
def test_a_failing_step_is_named_and_nothing_is_recorded(tmp_path):
    with open_devchain(accounts=2) as dev:
        w3 = connect(dev.rpc_url)
        path = tmp_path / "deployment.json"
        # ValidatorQuorum's constructor refuses a quorum of one third: the step after the governor fails.
        bad = DeployParams(validator_quorum_numerator=1)
        with pytest.raises(DeploymentError) as failure:
            deploy_system(w3, dev.private_keys[0], genesis_validators=GENESIS, path=path, params=bad)
        message = str(failure.value)
        assert "step 9/15 (validator quorum (genesis set of 3) and slashing)" in message
        assert "ValidatorQuorumInvalidQuorum(1, 3)" in message
        assert "Nothing was recorded" in message
        assert not path.exists()


@pytest.mark.chain
def test_progress_reports_every_step_in_order(tmp_path):
    seen = []
    with open_devchain(accounts=2) as dev:
        deploy_system(
            connect(dev.rpc_url),
            dev.private_keys[0],
            genesis_validators=GENESIS,
            on_step=lambda i, n, text: seen.append((i, n, text)),
        )
    assert [i for i, _, _ in seen] == list(range(15))
    assert {n for _, n, _ in seen} == {15}
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


@pytest.mark.chain
def test_a_non_dev_chain_needs_a_real_payment_token_and_named_powers(tmp_path):
    """Medium finding: beyond a dev chain, `dolphin chain deploy` still wired the open-mint LocalStablecoin
    and left the keeper and guardian with the deployer's key."""
    with open_devchain(chain_id=4242, accounts=3) as dev:
        w3 = connect(dev.rpc_url)
        block = w3.eth.block_number
        for missing in ("payment token", "keeper", "guardian"):
            with pytest.raises(DeploymentError, match=f"chain 4242 is not a dev chain: name the .*{missing}"):
                deploy_system(w3, dev.private_keys[0], genesis_validators=GENESIS)
        with pytest.raises(DeploymentError, match="demo accounts are funded on dev chains only"):
            deploy_system(
                w3, dev.private_keys[0], genesis_validators=GENESIS, payment_token=GENESIS[0],
                keeper=GENESIS[0], guardian=GENESIS[1], demo_accounts=[GENESIS[2]],
            )  # fmt: skip
        assert w3.eth.block_number == block  # refused before sending anything

        # The "real" stablecoin and Uniswap: contracts that exist before the deployment.
        deployer = Account.from_key(dev.private_keys[0])
        token = deploy_contract(w3, deployer, "LocalStablecoin")
        params = DeployParams()
        send(w3, deployer, token.functions.mint(deployer.address, params.pool_usd), "funding the deployer")
        uniswap = "@uniswap/v2-core/build/UniswapV2Factory.json", "@uniswap/v2-periphery/build/WETH9.json"
        factory = deploy_contract(w3, deployer, "F", deployer.address, artifact=load_npm_artifact(uniswap[0]))
        weth = deploy_contract(w3, deployer, "W", artifact=load_npm_artifact(uniswap[1]))
        router = deploy_contract(
            w3, deployer, "R", factory.address, weth.address,
            artifact=load_npm_artifact("@uniswap/v2-periphery/build/UniswapV2Router02.json"),
        )  # fmt: skip
        keeper, guardian = (Account.from_key(k).address for k in dev.private_keys[1:3])
        deployment = deploy_system(
            w3, dev.private_keys[0], genesis_validators=GENESIS, payment_token=token.address, keeper=keeper,
            guardian=guardian, uniswap_router=router.address, path=tmp_path / "deployment.json",
        )  # fmt: skip
        reader = ChainClient(dev.rpc_url, deployment)
        assert deployment.address("PaymentToken") == token.address
        assert deployment.address("UniswapV2Factory") == factory.address
        assert reader.call("Buyback", "router") == router.address
        assert (deployment.keeper, deployment.guardian) == (keeper, guardian)
        assert reader.call("Credits", "token") == token.address
        assert reader.call("Buyback", "paymentToken") == token.address
        revoker = reader.call("RewardsDistributor", "REVOKER_ROLE")
        assert not reader.call("RewardsDistributor", "hasRole", revoker, deployer.address)
        assert not reader.call("Buyback", "hasRole", reader.call("Buyback", "KEEPER_ROLE"), deployer.address)
        assert reader.call("POD", "balanceOf", deployer.address) == 0


@pytest.mark.chain
def test_a_deployer_without_the_pairs_stablecoins_is_told_so(tmp_path):
    with open_devchain(chain_id=4242, accounts=3) as dev:
        w3 = connect(dev.rpc_url)
        token = deploy_contract(w3, Account.from_key(dev.private_keys[0]), "LocalStablecoin")
        with pytest.raises(DeploymentError, match="initial liquidity needs 1000000000000: fund 0x"):
            deploy_system(
                w3, dev.private_keys[0], genesis_validators=GENESIS, payment_token=token.address,
                keeper=GENESIS[0], guardian=GENESIS[1],
            )  # fmt: skip


@pytest.mark.chain
def test_governance_passes_a_vote_on_the_deployed_distribution(deployed_chain):
    """Medium finding: a quorum of 4% of supply (40M POD) while at most ~9M POD could vote. On what
    deploy_system hands out (1M POD to each demo account; the treasury, rewards pool and pair cannot vote),
    the genesis validators vote with their bonded stake and three demo accounts with POD: 6M of the 5M
    quorum, through propose -> vote -> queue -> execute. Through `deployed_chain`, which undoes it all
    after: its bonds and delegations would change what the module's other tests read."""
    deployed = deployed_chain
    w3, deployment = deployed.w3, deployed.deployment
    keys = deployed.keys
    voters = [ChainClient(deployed.rpc_url, deployment, key) for key in keys[1:7]]
    bond_validators(voters[:3])  # keys 1-3: 150k POD bonded each, 850k POD left liquid
    governor = w3.eth.contract(
        address=deployment.address("DolphinGovernor"), abi=load_artifact("DolphinGovernor").abi
    )
    for voter in voters:
        voter.transact("POD", "delegate", voter.address)
    time_travel(w3, 1)
    registry = voters[0].contracts["ParamsRegistry"]
    target = [registry.address]
    calldata = [registry.encode_abi("setParam", args=["full_weeks", 20])]
    description = "full_weeks to 20, voted by the deployed distribution"
    proposer = voters[3]
    receipt = send(
        w3, proposer.account, governor.functions.propose(target, [0], calldata, description), "proposing"
    )
    proposal = governor.events.ProposalCreated().process_receipt(receipt)[0]["args"]["proposalId"]
    time_travel(w3, DeployParams().voting_delay + 1)
    snapshot = governor.functions.proposalSnapshot(proposal).call()
    assert governor.functions.quorum(snapshot).call() == 5_000_000 * POD
    weights = []
    for voter in voters:
        weights.append(governor.functions.getVotes(voter.address, snapshot).call())
        send(w3, voter.account, governor.functions.castVote(proposal, 1), "voting for")
    assert weights[0] == 1_000_000 * POD  # 850k POD delegated + 150k POD bonded
    assert sum(weights) == 6_000_000 * POD
    time_travel(w3, DeployParams().voting_period + 1)
    description_hash = w3.keccak(text=description)
    send(w3, proposer.account, governor.functions.queue(target, [0], calldata, description_hash), "queueing")
    time_travel(w3, DeployParams().timelock_delay + 1)
    send(
        w3, proposer.account, governor.functions.execute(target, [0], calldata, description_hash), "executing"
    )
    assert voters[0].call("ParamsRegistry", "valueOf", "full_weeks") == 20
