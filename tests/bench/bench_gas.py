"""Gas used per user-facing contract call, measured on a fresh Anvil chain with every contract deployed.

`python -m tests.bench gas` deploys POD, StakedPOD, Bonding, ParamsRegistry, ValidatorQuorum (a genesis set of
three), Credits, Buyback (on a real Uniswap V2 pair from the npm artifacts) and RewardsDistributor on an
Anvil of its own (a free loopback port,
never Brownie's 8545), walks one user through each call and records the receipt's gasUsed. It needs the
compiled artifacts (`brownie compile`, part of `make setup`).

Comparisons: the buyback is set against a plain Router02 swap of the same size on the same pair, measured in
the same run (the buyback is that swap plus the TWAP guard and the vesting hand-off). Published figures of
the reference contracts are listed where a public source states one; where none was found the table says so
rather than guessing.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from eth_account import Account
from web3 import Web3

from chain.artifacts import load_artifact
from chain.devchain import open_devchain
from chain.merkle import RewardsTree
from tests.eip712 import sign_typed_data, typed_data

POD = 10**18
USD = 10**6
DAY = 86_400
UNISWAP_BUILD = pathlib.Path(__file__).resolve().parents[2] / "node_modules" / "@uniswap"

# Published per-call figures of the reference designs, with where they are stated. None: no public figure
# was found for that call (Sushi's SushiBar and Aave's StakedAave repositories publish no gas report).
SWAP_REFERENCE = "Uniswap V2 swap (Router02, same pair, reference)"
SETTLE_ONE = "settle debit batch (1 entry, 3 signatures)"
SETTLE_TEN = "settle debit batch (10 users, 3 signatures)"
PUBLISHED = {
    SWAP_REFERENCE: (
        135_000,
        "Uniswap V2 swap: BASE_SWAP_COST in Uniswap smart-order-router "
        "src/routers/alpha-router/gas-models/v2/v2-heuristic-gas-model.ts (routing heuristic, one hop)",
    ),
    "stake": (None, "xSUSHI SushiBar.enter / stkAAVE stake: no published figure found"),
    "cooldown": (None, "stkAAVE cooldown: no published figure found"),
    "redeem": (None, "xSUSHI SushiBar.leave / stkAAVE redeem: no published figure found"),
}


class _Chain:
    """A thin web3 helper: deploy artifacts, send from unlocked dev accounts, travel in time."""

    def __init__(self, rpc_url: str):
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
        self.accounts = self.w3.eth.accounts

    def deploy(self, name: str, *args: Any, sender: str | None = None):
        artifact = load_artifact(name)
        return self._deploy(artifact.abi, artifact.bytecode, args, sender)

    def deploy_uniswap(self, package_path: str, *args: Any, sender: str | None = None):
        artifact = json.loads((UNISWAP_BUILD / package_path).read_text())
        return self._deploy(artifact["abi"], "0x" + artifact["bytecode"].removeprefix("0x"), args, sender)

    def _deploy(self, abi, bytecode, args, sender):
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        receipt = self._wait(factory.constructor(*args).transact({"from": sender or self.accounts[0]}))
        return self.w3.eth.contract(address=receipt.contractAddress, abi=abi)

    def send(self, call, sender: str):
        return self._wait(call.transact({"from": sender}))

    def _wait(self, tx_hash):
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt.status != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def sleep(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])

    def now(self) -> int:
        return self.w3.eth.get_block("latest").timestamp


def _sign(key: str, contract, primary: str, fields: list, message: dict) -> bytes:
    document = typed_data(
        primary, fields, message, chain_id=contract.w3.eth.chain_id, verifying_contract=contract.address
    )
    return sign_typed_data(key, document)


def _quorum_signatures(keys: list[str], contract, primary: str, fields: list, message: dict) -> list[bytes]:
    """Signatures ordered by signer address, as ValidatorQuorum requires."""
    ordered = sorted(keys, key=lambda key: int(Account.from_key(key).address, 16))
    return [_sign(key, contract, primary, fields, message) for key in ordered]


def measure(rpc_url: str, private_keys: tuple[str, ...]) -> dict[str, int]:
    """Deploys everything and returns gasUsed per call name."""
    c = _Chain(rpc_url)
    admin, treasury, pool, *others = c.accounts
    validator_addresses, validator_keys = others[:3], list(private_keys[3:6])
    staker, api_user, earner, bonded_earner = others[3], others[4], others[5], others[6]
    gas: dict[str, int] = {}

    pod = c.deploy("POD", treasury, 600_000_000 * POD, pool, 400_000_000 * POD)
    stkpod = c.deploy("StakedPOD", pod.address, admin)
    bonding = c.deploy("Bonding", stkpod.address, admin)
    c.send(stkpod.functions.grantRole(stkpod.functions.COOLDOWN_EXEMPT_ROLE().call(), bonding.address), admin)
    registry = c.deploy("ParamsRegistry", admin)
    genesis = sorted(validator_addresses, key=lambda a: int(a, 16))
    quorum = c.deploy("ValidatorQuorum", bonding.address, registry.address, admin, 2, 3, genesis, [1, 1, 1])

    def stake(account: str, amount: int):
        c.send(pod.functions.transfer(account, amount), treasury)
        c.send(pod.functions.approve(stkpod.address, amount), account)
        return c.send(stkpod.functions.deposit(amount, account), account)

    # Validators stake and bond first, so the measured staker is a typical (not the first) one.
    for validator in validator_addresses:
        stake(validator, 150_000 * POD)
        shares = stkpod.functions.balanceOf(validator).call()
        c.send(stkpod.functions.approve(bonding.address, shares), validator)
        c.send(bonding.functions.bond(shares), validator)
        c.send(quorum.functions.joinValidators(), validator)

    # ------------------------------------------------------------ staking and bonding
    gas["stake"] = stake(staker, 10_000 * POD).gasUsed
    shares = stkpod.functions.balanceOf(staker).call()
    c.send(stkpod.functions.approve(bonding.address, shares // 2), staker)
    gas["bond"] = c.send(bonding.functions.bond(shares // 2), staker).gasUsed
    receipt = c.send(bonding.functions.requestUnbond(shares // 4), staker)
    gas["request unbond"] = receipt.gasUsed
    request_id = bonding.events.UnbondRequested().process_receipt(receipt)[0]["args"]["requestId"]
    gas["cooldown"] = c.send(stkpod.functions.cooldown(), staker).gasUsed
    c.sleep(90 * DAY + 1)
    covered = stkpod.functions.cooldownOf(staker).call()[1]
    gas["redeem"] = c.send(stkpod.functions.redeem(covered, staker, staker), staker).gasUsed
    gas["withdraw (unbonded)"] = c.send(bonding.functions.withdrawUnbonded(request_id), staker).gasUsed

    # ------------------------------------------------------------ credits and buyback
    usd = c.deploy("LocalStablecoin")
    factory = c.deploy_uniswap("v2-core/build/UniswapV2Factory.json", admin)
    weth = c.deploy_uniswap("v2-periphery/build/WETH9.json")
    router = c.deploy_uniswap("v2-periphery/build/UniswapV2Router02.json", factory.address, weth.address)
    c.send(usd.functions.mint(treasury, 1_000_000 * USD), treasury)
    c.send(usd.functions.approve(router.address, 2**256 - 1), treasury)
    c.send(pod.functions.approve(router.address, 2**256 - 1), treasury)
    c.send(
        router.functions.addLiquidity(
            usd.address, pod.address, 1_000_000 * USD, 10_000_000 * POD, 0, 0, treasury, c.now() + 3600
        ),
        treasury,
    )
    buyback = c.deploy(
        "Buyback", router.address, usd.address, pod.address, stkpod.address, admin, 1800, 100, 50_000 * USD
    )
    c.send(buyback.functions.grantRole(buyback.functions.KEEPER_ROLE().call(), admin), admin)
    credits = c.deploy("Credits", usd.address, quorum.address, buyback.address, 3 * DAY, admin)

    c.send(usd.functions.mint(api_user, 10_000 * USD), api_user)
    c.send(usd.functions.approve(credits.address, 2**256 - 1), api_user)
    gas["deposit credit"] = c.send(credits.functions.deposit(5_000 * USD), api_user).gasUsed
    gas["request credit withdrawal"] = c.send(credits.functions.requestWithdrawal(USD), api_user).gasUsed

    batch_fields = [
        {"name": "batchId", "type": "uint256"},
        {"name": "users", "type": "address[]"},
        {"name": "amounts", "type": "uint256[]"},
        {"name": "deadline", "type": "uint256"},
    ]
    deadline = c.now() + 3600

    def settle(batch_id: int, users: list[str], amounts: list[int]) -> int:
        message = {"batchId": batch_id, "users": users, "amounts": amounts, "deadline": deadline}
        signatures = _quorum_signatures(validator_keys, credits, "CreditDebitBatch", batch_fields, message)
        call = credits.functions.settleDebits(batch_id, users, amounts, deadline, signatures)
        return c.send(call, admin).gasUsed

    # Batch 1 warms the revenue counters (their first write costs more); batch 2 is a steady-state single
    # debit, batch 3 debits ten distinct users, which gives the marginal cost of one more entry.
    settle(1, [api_user], [1_000 * USD])
    gas[SETTLE_ONE] = settle(2, [api_user], [1_000 * USD])
    holders = [Account.from_key(bytes([2]) + i.to_bytes(31, "big")).address for i in range(10)]
    for holder in holders:
        c.send(credits.functions.depositFor(holder, 10 * USD), api_user)
    gas[SETTLE_TEN] = settle(3, holders, [USD] * 10)

    c.sleep(1801)
    trader = others[1]  # a validator wallet doubles as an ordinary trader for the reference swap
    c.send(usd.functions.mint(trader, 2_000 * USD), trader)
    c.send(usd.functions.approve(router.address, 2**256 - 1), trader)
    swap = router.functions.swapExactTokensForTokens(
        1_000 * USD, 0, [usd.address, pod.address], trader, c.now() + 600
    )
    gas[SWAP_REFERENCE] = c.send(swap, trader).gasUsed
    gas["buyback"] = c.send(buyback.functions.buyback(1_000 * USD, 0, c.now() + 600), admin).gasUsed

    # ------------------------------------------------------------ rewards
    distributor = c.deploy(
        "RewardsDistributor", pod.address, stkpod.address, bonding.address, quorum.address, admin, 3600, 1000
    )
    c.send(quorum.functions.bindInstaller(distributor.address), admin)
    c.send(pod.functions.transfer(distributor.address, 1_000_000 * POD), pool)
    # A realistic tree: 254 filler accounts beside the two measured earners (proofs of 7 or 8 hashes).
    amounts_by_account = {
        Account.from_key(bytes([1]) + i.to_bytes(31, "big")).address: POD for i in range(254)
    }
    amounts_by_account |= {earner: 100 * POD, bonded_earner: 100 * POD}
    tree = RewardsTree.build(amounts_by_account)
    root_fields = [
        {"name": "epoch", "type": "uint256"},
        {"name": "root", "type": "bytes32"},
        {"name": "total", "type": "uint256"},
        {"name": "validators", "type": "address[]"},
        {"name": "weights", "type": "uint256[]"},
        {"name": "deadline", "type": "uint256"},
    ]
    deadline = c.now() + 3600
    # The root elects the three validators again, now weighted by their bonds (the same set, re-checked).
    weights = [bonding.functions.activeBondOf(v).call() for v in genesis]
    message = {
        "epoch": 1,
        "root": tree.root,
        "total": tree.total,
        "validators": genesis,
        "weights": weights,
        "deadline": deadline,
    }
    signatures = _quorum_signatures(validator_keys, distributor, "EpochRoot", root_fields, message)
    proposal = (1, tree.root, tree.total, genesis, weights, deadline)
    propose = distributor.functions.proposeRoot(proposal, signatures)
    gas["propose epoch root (3 signatures, next set of 3)"] = c.send(propose, admin).gasUsed
    c.sleep(3601)
    activate = distributor.functions.activateRoot(1, genesis, weights)
    gas["activate epoch root (installs a set of 3)"] = c.send(activate, admin).gasUsed
    claim = distributor.functions.claim(100 * POD, list(tree.proof(earner)))
    gas["claim liquid"] = c.send(claim, earner).gasUsed
    claim_bonded = distributor.functions.claimBonded(100 * POD, list(tree.proof(bonded_earner)))
    gas["claim bonded"] = c.send(claim_bonded, bonded_earner).gasUsed
    return gas


def _table(gas: dict[str, int]) -> str:
    lines = [f"{'call':<48} {'gas used':>10}  {'published':>10}  {'ratio':>6}  source"]
    for name, used in gas.items():
        published, source = PUBLISHED.get(name, (None, ""))
        ratio = f"{used / published:.2f}" if published else "-"
        shown = f"{published:,}" if published else "-"
        lines.append(f"{name:<48} {used:>10,}  {shown:>10}  {ratio:>6}  {source}")
    return "\n".join(lines)


def run(out_dir: pathlib.Path) -> dict:
    with open_devchain(accounts=10) as dev:
        gas = measure(dev.rpc_url, dev.private_keys)
    table = _table(gas)
    print(table)
    (out_dir / "gas.txt").write_text(table + "\n")
    swap = gas[SWAP_REFERENCE]
    published_swap = PUBLISHED[SWAP_REFERENCE][0]
    return {
        "gas_used": gas,
        "published": {name: {"gas": value, "source": source} for name, (value, source) in PUBLISHED.items()},
        "ratios": {
            "buyback / same-run Router02 swap": round(gas["buyback"] / swap, 3),
            "buyback / published Uniswap V2 swap": round(gas["buyback"] / published_swap, 3),
            "same-run Router02 swap / published Uniswap V2 swap": round(swap / published_swap, 3),
        },
        "marginal gas per debit entry": (gas[SETTLE_TEN] - gas[SETTLE_ONE]) // 9,
    }
