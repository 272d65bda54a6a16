"""Fixtures for contract tests: Brownie on a local Anvil chain, state reverted after every test."""

import pytest

POD_UNIT = 10**18
TREASURY_SUPPLY = 600_000_000 * POD_UNIT
REWARDS_SUPPLY = 400_000_000 * POD_UNIT


def pytest_collection_modifyitems(items):
    for item in items:
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
