"""Fixtures for contract tests: Brownie on a local Anvil chain, state reverted after every test."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import brownie
import hypothesis
import pytest
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from tests.eip712 import sign_typed_data, typed_data

POD_UNIT = 10**18
TREASURY_SUPPLY = 600_000_000 * POD_UNIT
REWARDS_SUPPLY = 400_000_000 * POD_UNIT


class _CallerFrameOnly:
    """Stands in for `inspect` in brownie.network.rpc. Brownie 1.22 guards Rpc.snapshot, revert, sleep and
    mine with `inspect.stack()[1].frame` to warn callers other than `chain`, and inspect.stack reads the
    source of every frame on the stack: under Hypothesis that was a tenth of a second per snapshot or revert,
    most of the contract tests' time. This gives the guard the same caller frame without reading any file."""

    @staticmethod
    def stack():
        caller = sys._getframe(2)  # 0: here, 1: Brownie's guard, 2: who called the guarded method
        return [None, SimpleNamespace(frame=caller)]


sys.modules["brownie.network.rpc"].inspect = _CallerFrameOnly  # the module: brownie.network.rpc is an Rpc


def pytest_collection_modifyitems(items):
    # A conftest hook sees every collected item, not only this folder's: mark ours alone.
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.contracts)


@pytest.fixture(autouse=True)
def isolate(fn_isolation):
    """Every test starts from the module's deployment: Brownie snapshots and reverts the chain."""


@pytest.fixture(scope="module")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def treasury(accounts):
    return accounts[1]


@pytest.fixture(scope="module")
def rewards_pool(accounts):
    return accounts[2]


@pytest.fixture(scope="module")
def pod(POD, deployer, treasury, rewards_pool):
    return POD.deploy(treasury, TREASURY_SUPPLY, rewards_pool, REWARDS_SUPPLY, {"from": deployer})


# ---------------------------------------------------------------- Uniswap V2 and the payment token (helper B)
# Uniswap V2 is deployed from the npm packages' compiled artifacts (solc 0.5/0.6 output, which our 0.8
# compiler cannot rebuild); Router02's built-in pair init-code hash matches that Factory's Pair bytecode.

USD_UNIT = 10**6
"""One unit of the 6-decimals payment-token stand-in (LocalStablecoin)."""
POOL_USD = 1_000_000 * USD_UNIT
POOL_POD = 10_000_000 * POD_UNIT
"""Initial liquidity of the lUSD/POD pair: 0.1 lUSD per POD."""

UNISWAP_BUILD = Path(__file__).resolve().parents[2] / "node_modules" / "@uniswap"


def deploy_artifact(package_path: str, name: str, deployer, *args):
    """Deploys `node_modules/@uniswap/<package_path>` (a build JSON) and wraps it as a Brownie Contract."""
    artifact = json.loads((UNISWAP_BUILD / package_path).read_text())
    web3 = brownie.network.web3
    factory = web3.eth.contract(abi=artifact["abi"], bytecode="0x" + artifact["bytecode"].removeprefix("0x"))
    tx_hash = factory.constructor(*args).transact({"from": deployer.address})
    receipt = web3.eth.wait_for_transaction_receipt(tx_hash)
    return brownie.Contract.from_abi(name, receipt.contractAddress, artifact["abi"])


@pytest.fixture(scope="module")
def stablecoin(LocalStablecoin, deployer):
    return LocalStablecoin.deploy({"from": deployer})


@pytest.fixture(scope="module")
def uniswap(deployer):
    """Factory, WETH9 and Router02 as published on npm: a real DEX on the local chain."""
    factory = deploy_artifact(
        "v2-core/build/UniswapV2Factory.json", "UniswapV2Factory", deployer, deployer.address
    )
    weth = deploy_artifact("v2-periphery/build/WETH9.json", "WETH9", deployer)
    router = deploy_artifact(
        "v2-periphery/build/UniswapV2Router02.json",
        "UniswapV2Router02",
        deployer,
        factory.address,
        weth.address,
    )
    return SimpleNamespace(factory=factory, weth=weth, router=router)


@pytest.fixture(scope="module")
def pod_pair(uniswap, stablecoin, pod, treasury):
    """The lUSD/POD pair, made by Router02.addLiquidity with POOL_USD and POOL_POD from the treasury."""
    stablecoin.mint(treasury, POOL_USD, {"from": treasury})
    stablecoin.approve(uniswap.router, POOL_USD, {"from": treasury})
    pod.approve(uniswap.router, POOL_POD, {"from": treasury})
    deadline = brownie.chain[-1].timestamp + 3600
    uniswap.router.addLiquidity(
        stablecoin, pod, POOL_USD, POOL_POD, POOL_USD, POOL_POD, treasury, deadline, {"from": treasury}
    )
    pair_abi = json.loads((UNISWAP_BUILD / "v2-core/build/UniswapV2Pair.json").read_text())["abi"]
    return brownie.Contract.from_abi("UniswapV2Pair", uniswap.factory.getPair(stablecoin, pod), pair_abi)


# ---------------------------------------------------------------- governance (helper B)

TIMELOCK_DELAY = 2 * 86400
VOTING_DELAY = 86400
VOTING_PERIOD = 5 * 86400
PROPOSAL_THRESHOLD = 1_000_000 * POD_UNIT
QUORUM_BPS = 400


@pytest.fixture(scope="module")
def timelock(DolphinTimelock, deployer):
    """The timelock; the deployer keeps the bootstrap admin role until `governor` wires and renounces it."""
    return DolphinTimelock.deploy(TIMELOCK_DELAY, [], [brownie.ZERO_ADDRESS], deployer, {"from": deployer})


@pytest.fixture(scope="module")
def governor(DolphinGovernor, pod, stkpod, bonding, timelock, deployer):
    """The Governor (votes: POD, stkPOD, bonded stkPOD) as the timelock's only proposer and canceller; the
    bootstrap admin is renounced."""
    governor = DolphinGovernor.deploy(
        pod,
        stkpod,
        bonding,
        timelock,
        VOTING_DELAY,
        VOTING_PERIOD,
        PROPOSAL_THRESHOLD,
        QUORUM_BPS,
        {"from": deployer},
    )
    timelock.grantRole(timelock.PROPOSER_ROLE(), governor, {"from": deployer})
    timelock.grantRole(timelock.CANCELLER_ROLE(), governor, {"from": deployer})
    timelock.renounceRole(timelock.DEFAULT_ADMIN_ROLE(), deployer, {"from": deployer})
    return governor


@pytest.fixture(scope="module")
def params_registry(ParamsRegistry, timelock, deployer):
    return ParamsRegistry.deploy(timelock, {"from": deployer})


# -------------------------------------------------------------- staking, bonding, quorum, slashing (helper A)
# EIP-712 messages are signed here with eth_account, independently of the contracts' own hashing, so a test
# passing means both sides agree on the type strings of the cross-part agreement.

EIP712_NAME = "Dolphin Network"
EIP712_VERSION = "1"
NODE_BINDING_FIELDS = [
    {"name": "operator", "type": "address"},
    {"name": "peerIdHash", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
]
STRIKE_DECISION_FIELDS = [
    {"name": "offender", "type": "address"},
    {"name": "evidenceHash", "type": "bytes32"},
    {"name": "slashBps", "type": "uint256"},
    {"name": "reporter", "type": "address"},
    {"name": "deadline", "type": "uint256"},
]
SHARE_UNIT = 10**24
"""One stkPOD (24 decimals: POD's 18 plus the vault's inflation-defence offset of 6)."""
MIN_VALIDATOR_BOND = 100_000 * POD_UNIT


def sign_typed(private_key, verifying_contract, primary_type: str, fields: list, message: dict) -> bytes:
    """65-byte signature of an EIP-712 message in the "Dolphin Network" v1 domain of `verifying_contract`."""
    document = typed_data(
        primary_type,
        fields,
        message,
        chain_id=brownie.chain.id,
        verifying_contract=str(verifying_contract),
        name=EIP712_NAME,
        version=EIP712_VERSION,
    )
    return sign_typed_data(private_key, document)


def stake_pod(pod, stkpod, treasury, account, amount: int) -> int:
    """Gives `account` `amount` POD from the treasury and deposits it into the vault; returns its shares."""
    pod.transfer(account, amount, {"from": treasury})
    pod.approve(stkpod, amount, {"from": account})
    return stkpod.deposit(amount, account, {"from": account}).return_value


def bond_pod(pod, stkpod, bonding, treasury, account, amount: int) -> int:
    """Stakes `amount` POD for `account` and bonds all the resulting shares; returns them."""
    shares = stake_pod(pod, stkpod, treasury, account, amount)
    stkpod.approve(bonding, shares, {"from": account})
    bonding.bond(shares, {"from": account})
    return shares


@pytest.fixture(scope="module")
def stkpod(StakedPOD, pod, deployer):
    return StakedPOD.deploy(pod, deployer, {"from": deployer})


@pytest.fixture(scope="module")
def bonding(Bonding, stkpod, deployer):
    """Bonding with the vault's cooldown exemption (it redeems slashed shares to burn them)."""
    bonding = Bonding.deploy(stkpod, deployer, {"from": deployer})
    stkpod.grantRole(stkpod.COOLDOWN_EXEMPT_ROLE(), bonding, {"from": deployer})
    return bonding


@pytest.fixture(scope="module")
def quorum_params(ParamsRegistry, deployer):
    """A parameter registry the deployer owns, so tests can move `validator_min_bond` directly."""
    return ParamsRegistry.deploy(deployer, {"from": deployer})


def genesis_weights(count: int) -> list[int]:
    """Weights 1, 2, 3... x 100k POD in shares: what the `validators` fixture then bonds, in address order."""
    return [(i + 1) * MIN_VALIDATOR_BOND * SHARE_UNIT // POD_UNIT for i in range(count)]


@pytest.fixture(scope="module")
def validator_quorum(ValidatorQuorum, bonding, quorum_params, validator_wallets, deployer):
    """Two-thirds quorum over a genesis set of the four validator wallets, weighted 1:2:3:4."""
    return ValidatorQuorum.deploy(
        bonding,
        quorum_params,
        deployer,
        2,
        3,
        validator_wallets,
        genesis_weights(len(validator_wallets)),
        {"from": deployer},
    )


@pytest.fixture(scope="module")
def slashing(Slashing, bonding, validator_quorum, deployer):
    slashing = Slashing.deploy(bonding, validator_quorum, deployer, {"from": deployer})
    bonding.bindSlasher(slashing, {"from": deployer})
    return slashing


@pytest.fixture(scope="module")
def validator_wallets(accounts, deployer):
    """Four wallets with known keys (for EIP-712 signing), funded with ETH, sorted by address."""
    from eth_account import Account

    wallets = []
    for i in range(4):
        key = "0x" + bytes([0xA0 + i] * 32).hex()
        deployer.transfer(Account.from_key(key).address, 10**18)
        wallets.append(accounts.add(key))
    return sorted(wallets, key=lambda wallet: int(wallet.address, 16))


@pytest.fixture(scope="module")
def validators(pod, stkpod, bonding, validator_quorum, treasury, validator_wallets):
    """The genesis wallets bonded with 100k, 200k, 300k and 400k POD (in address order, their genesis
    weights) and opted in, so a root can carry the set forward."""
    for i, wallet in enumerate(validator_wallets):
        bond_pod(pod, stkpod, bonding, treasury, wallet, (i + 1) * MIN_VALIDATOR_BOND)
        validator_quorum.joinValidators({"from": wallet})
    return validator_wallets


def current_set(quorum) -> tuple[list[str], list[int]]:
    """The quorum's current members and weights: the next set a root signs when nothing changes."""
    members, weights = quorum.validators()
    return [str(m) for m in members], [int(w) for w in weights]


# ---------------------------------------------------------------- stateful tests on the chain (helper B)


class ChainStateMachine(RuleBasedStateMachine):
    """A hypothesis state machine whose every example starts from the chain snapshot taken by
    `run_chain_state_machine`: what brownie's `state_machine` fixture does. (That fixture is unusable in
    Brownie 1.22: its mypyc build rejects the machine class it generates, "_BrownieStateMachine object
    expected".) Subclasses get their contracts as class attributes from `bind`."""

    examples = 0

    def __init__(self):
        brownie.chain.revert()
        # A head block of its own time per example: a transaction that derives its deadline from the head
        # (a signed batch, a root) never repeats, byte for byte, one an earlier example sent, which Brownie
        # would report as "dropped" (its hash is known already) even from a node-held account.
        ChainStateMachine.examples += 1
        brownie.chain.sleep(ChainStateMachine.examples)
        brownie.chain.mine()
        super().__init__()

    @classmethod
    def bind(cls, **attributes):
        return type(cls.__name__, (cls,), attributes)


def run_chain_state_machine(machine: type[ChainStateMachine], *, max_examples: int, steps: int) -> None:
    """Runs `machine` with more examples and steps than Brownie's low defaults (50 and 25 here)."""
    brownie.chain.snapshot()
    run_state_machine_as_test(
        machine,
        settings=hypothesis.settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        ),
    )
