"""Deploying the whole Dolphin system to a chain, and the deployment file every other command reads.

`deploy_system` runs a fixed list of steps: POD, the payment token, the timelock, Uniswap V2 (factory,
WETH9, Router02 from the npm packages' artifacts, or an existing Router02) and the payment/POD pair with
initial liquidity, the parameter registry, staking and bonding, the Governor, the validator quorum with its
genesis set, slashing, buyback, credits and rewards, then the role wiring of tests/contracts/conftest.py
with governance as the end state: every admin role goes to the timelock and the deployer renounces its own.
Every power ends with the timelock or a named address: the LP tokens and Uniswap's `feeToSetter` with the
timelock, the buyback keeper and the rewards guardian (a revoker) as named in the file, the slasher and
the validator-set installer bound once to the Slashing and RewardsDistributor contracts, for good.
Finally demo accounts are funded (dev chains only).

On a chain that is not a dev chain (chain id 31337) the deployment refuses to guess: it needs the real
payment token's address (no LocalStablecoin, whose faucet mints for anyone), a keeper and a guardian
named explicitly, and no demo accounts. Every chain needs a genesis validator set (see
contracts/bonding/ValidatorQuorum.sol): the set that signs the first epoch roots until an elected set
replaces it.

The deployment file (JSON) is written only after the last step succeeded, atomically; its default place
is `<data dir>/deployment-<chain id>.json` (data dir: --data-dir, $DOLPHIN_DATA_DIR, else ~/.dolphin). It
records the chain's genesis block hash, so a file left over from an earlier dev chain with the same id is
recognised as stale and replaced, while a second deploy to the same chain is refused, or reused after the
code at every address was checked.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chain.artifacts import Artifact, load_artifact, load_npm_artifact
from chain.devchain import DEFAULT_CHAIN_ID
from chain.errors import ChainError
from chain.transactions import deploy_contract, read, send, send_value
from runtime.files import write_atomically

POD_UNIT = 10**18
USD_UNIT = 10**6
DEPLOYMENT_FORMAT = "dolphin-deployment-v2"
ZERO_ADDRESS = "0x" + "00" * 20

# The contracts a deployment file names, in deployment order; every one must have code for it to be valid.
CONTRACT_NAMES = (
    "POD",
    "PaymentToken",
    "UniswapV2Factory",
    "WETH9",
    "UniswapV2Router02",
    "UniswapV2Pair",
    "DolphinTimelock",
    "DolphinGovernor",
    "ParamsRegistry",
    "StakedPOD",
    "Bonding",
    "ValidatorQuorum",
    "Slashing",
    "Buyback",
    "Credits",
    "RewardsDistributor",
)
_UNISWAP = {
    "UniswapV2Factory": "@uniswap/v2-core/build/UniswapV2Factory.json",
    "UniswapV2Pair": "@uniswap/v2-core/build/UniswapV2Pair.json",
    "WETH9": "@uniswap/v2-periphery/build/WETH9.json",
    "UniswapV2Router02": "@uniswap/v2-periphery/build/UniswapV2Router02.json",
}


class DeploymentError(ChainError):
    """A deployment step failed, or a deployment file is missing, malformed or does not match the chain."""


class DeploymentExists(DeploymentError):
    """The chain already has a complete deployment recorded; pass reuse to use it."""


@dataclass(frozen=True)
class DeployParams:
    """Constructor arguments and amounts of a deployment; the defaults mirror the contract tests."""

    treasury_supply: int = 600_000_000 * POD_UNIT
    rewards_supply: int = 400_000_000 * POD_UNIT
    pool_pod: int = 10_000_000 * POD_UNIT
    pool_usd: int = 1_000_000 * USD_UNIT
    """Initial liquidity of the lUSD/POD pair: 0.1 lUSD per POD."""
    timelock_delay: int = 2 * 86400
    voting_delay: int = 86400
    voting_period: int = 5 * 86400
    proposal_threshold: int = 1_000_000 * POD_UNIT
    governor_quorum_bps: int = 50
    """0.5% of POD's supply (5M POD): sized to what can vote on a young network (on the dev chain, the
    9M POD of the demo accounts, staked and bonded POD included); governance raises it as POD circulates."""
    validator_quorum_numerator: int = 2
    validator_quorum_denominator: int = 3
    slash_bps: int = 5000
    """The share of an offender's slashable bond every validator's strike decision takes (Slashing.slashBps,
    within its maxSlashBps, 50%)."""
    twap_window: int = 1800
    max_slippage_bps: int = 300
    max_swap_amount: int = 10_000 * USD_UNIT
    credits_withdrawal_delay: int = 3 * 86400
    default_price: int = USD_UNIT // 2
    """What a million tokens of any model cost until governance prices it (Credits.setPrice): 0.5 lUSD."""
    root_delay: int = 2 * 86400
    bond_bonus_bps: int = 1000
    demo_pod: int = 1_000_000 * POD_UNIT
    demo_usd: int = 10_000 * USD_UNIT
    demo_min_eth: int = 10 * 10**18
    """Demo accounts holding less ETH than this are topped up to it from the deployer."""


@dataclass(frozen=True)
class Deployment:
    """Where everything is on one chain: what every command reads (from the deployment file)."""

    chain_id: int
    genesis_hash: str
    block: int
    """The block of the deployment's last transaction (event scans start near here)."""
    deployer: str
    timestamp: str
    """When the deployment finished, ISO 8601 UTC."""
    addresses: Mapping[str, str]
    keeper: str
    guardian: str
    demo_accounts: tuple[str, ...] = ()
    params: Mapping[str, int] = field(default_factory=dict)
    first_block: int = 0
    """The block of the deployment's first transaction."""
    genesis_validators: Mapping[str, int] = field(default_factory=dict)
    """The genesis validator set and its weights, as installed in ValidatorQuorum."""

    def address(self, name: str) -> str:
        try:
            return self.addresses[name]
        except KeyError:
            raise DeploymentError(f"the deployment file names no {name} contract; deploy again") from None

    def to_json(self) -> str:
        document = {"format": DEPLOYMENT_FORMAT} | asdict(self)
        document["addresses"] = dict(self.addresses)
        document["demo_accounts"] = list(self.demo_accounts)
        document["params"] = dict(self.params)
        document["genesis_validators"] = dict(self.genesis_validators)
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        """Read a deployment file, checking its format and that it names every contract by address."""
        from eth_utils import is_address, to_checksum_address

        try:
            document = json.loads(text)
            if document.pop("format") != DEPLOYMENT_FORMAT:
                raise ValueError(f"format is not {DEPLOYMENT_FORMAT}")
            addresses = document["addresses"]
            missing = [name for name in CONTRACT_NAMES if not is_address(addresses.get(name))]
            if missing or not isinstance(document["chain_id"], int):
                raise ValueError(f"no valid address for {', '.join(missing)}")
            document["addresses"] = {name: to_checksum_address(a) for name, a in addresses.items()}
            document["demo_accounts"] = tuple(
                to_checksum_address(a) for a in document.get("demo_accounts", ())
            )
            document["genesis_validators"] = {
                to_checksum_address(a): int(w) for a, w in document.get("genesis_validators", {}).items()
            }
            return cls(**document)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeploymentError(
                f"not a Dolphin deployment file ({exc}); remove it and run `dolphin chain deploy`"
            ) from exc

    def save(self, path: Path) -> None:
        """Write atomically (`runtime.files`), so a reader never sees half a file."""
        write_atomically(path, self.to_json().encode(), mode=0o600)


def deployment_path(data_dir: Path, chain_id: int) -> Path:
    return Path(data_dir) / f"deployment-{chain_id}.json"


def load_deployment(path: Path) -> Deployment:
    """Read a deployment file; DeploymentError says how to get one when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise DeploymentError(
            f"no deployment file at {path}: run `dolphin chain deploy` first, or pass --deployment FILE"
        )
    return Deployment.from_json(path.read_text())


def genesis_hash(w3) -> str:
    return "0x" + bytes(read(lambda: w3.eth.get_block(0)["hash"], "reading the genesis block")).hex()


def missing_code(w3, deployment: Deployment) -> list[str]:
    """The contracts of `deployment` that have no code on the chain `w3` talks to."""
    return [
        name
        for name in CONTRACT_NAMES
        if not read(functools.partial(w3.eth.get_code, deployment.address(name)), f"reading code of {name}")
    ]


def check_deployment(w3, deployment: Deployment) -> None:
    """Raise DeploymentError unless `deployment` belongs to this chain and all its code is there."""
    chain_id = read(lambda: w3.eth.chain_id, "reading the chain id")
    if chain_id != deployment.chain_id or genesis_hash(w3) != deployment.genesis_hash:
        raise DeploymentError(
            f"the deployment file is for another chain (chain id {deployment.chain_id}, genesis "
            f"{deployment.genesis_hash[:10]}…) than the one at this RPC URL (chain id {chain_id}); "
            "run `dolphin chain deploy` for this chain or pass the right --rpc-url"
        )
    if missing := missing_code(w3, deployment):
        raise DeploymentError(f"no code at the deployment's addresses of {', '.join(missing)}; deploy again")


def existing_deployment(w3, path: Path) -> Deployment | None:
    """The deployment recorded at `path` if it is for this very chain (same genesis), else None.

    Raises DeploymentError if it is for this chain but code is missing at some address (a broken state
    that a new deploy must not paper over).
    """
    if not Path(path).is_file():
        return None
    deployment = load_deployment(path)
    chain_id = read(lambda: w3.eth.chain_id, "reading the chain id")
    if deployment.chain_id != chain_id or deployment.genesis_hash != genesis_hash(w3):
        return None
    if missing := missing_code(w3, deployment):
        raise DeploymentError(
            f"{path} records a deployment on this chain but {', '.join(missing)} have no code; "
            "remove the file to deploy afresh"
        )
    return deployment


StepCallback = Callable[[int, int, str], None]
"""Called before each step with (index, count, description)."""


def deploy_system(
    w3,
    deployer_key: str,
    *,
    genesis_validators: Sequence[str],
    genesis_weights: Sequence[int] | None = None,
    path: Path | None = None,
    params: DeployParams = DeployParams(),
    demo_accounts: Sequence[str] = (),
    keeper: str | None = None,
    guardian: str | None = None,
    payment_token: str | None = None,
    uniswap_router: str | None = None,
    reuse: bool = False,
    on_step: StepCallback | None = None,
) -> Deployment:
    """Deploy and wire every contract from `deployer_key`'s account; write the deployment file to `path`.

    `genesis_validators` (weights `genesis_weights`, default one each) sign epoch roots until an elected set
    replaces them. `keeper` (buyback keeper) and `guardian` (may revoke a pending rewards root) default to
    the deployer, `payment_token` to a fresh LocalStablecoin and `uniswap_router` to a fresh Uniswap V2 — on
    a dev chain only: anywhere else the first three must be named and demo accounts are refused
    (DeploymentError, before anything is sent). With a given payment token the deployer must hold the pool's
    initial `pool_usd`. If `path` already records a complete deployment on this chain, raises
    DeploymentExists, or returns it when `reuse` is set. A failing step raises DeploymentError naming the
    step, and no file is written.
    """
    from eth_account import Account
    from web3 import Web3

    if path is not None and (found := existing_deployment(w3, path)) is not None:
        if reuse:
            return found
        raise DeploymentExists(
            f"this chain already has a Dolphin deployment (recorded in {path}, finished {found.timestamp}); "
            "pass --reuse to use it, or remove the file to deploy again"
        )
    chain_id = read(lambda: w3.eth.chain_id, "reading the chain id")
    if chain_id != DEFAULT_CHAIN_ID:
        missing = [
            option
            for option, value in (
                ("payment token", payment_token),
                ("keeper", keeper),
                ("guardian", guardian),
            )
            if value is None
        ]
        if missing:
            raise DeploymentError(
                f"chain {chain_id} is not a dev chain: name the {', '.join(missing)} (a real payment token "
                "instead of the dev chain's open-mint LocalStablecoin, and the accounts that run the buyback "
                "and may revoke a rewards root, rather than the deployer's key)"
            )
        if demo_accounts:
            raise DeploymentError(
                f"chain {chain_id} is not a dev chain: demo accounts are funded on dev chains only"
            )
    if demo_accounts and payment_token is not None:
        raise DeploymentError(
            "demo accounts are funded with the dev chain's LocalStablecoin: omit the payment token"
        )
    genesis = _genesis_set(genesis_validators, genesis_weights)
    account = Account.from_key(deployer_key)
    named = {"keeper": keeper or account.address, "guardian": guardian or account.address}
    run = _Deployer(
        w3,
        account,
        params,
        tuple(demo_accounts),
        named,
        genesis,
        Web3.to_checksum_address(payment_token) if payment_token else None,
        Web3.to_checksum_address(uniswap_router) if uniswap_router else None,
    )
    steps = run.steps()
    first_block = read(lambda: w3.eth.block_number, "reading the block number") + 1
    for index, (description, action) in enumerate(steps):
        if on_step is not None:
            on_step(index, len(steps), description)
        try:
            action()
        except ChainError as exc:
            raise DeploymentError(
                f"deployment step {index + 1}/{len(steps)} ({description}) failed: {exc}. Nothing was "
                "recorded as deployed; fix the cause and run the deploy again"
            ) from exc
    deployment = Deployment(
        chain_id=chain_id,
        genesis_hash=genesis_hash(w3),
        block=read(lambda: w3.eth.block_number, "reading the block number"),
        first_block=first_block,
        deployer=account.address,
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        addresses=dict(run.addresses),
        keeper=run.keeper,
        guardian=run.guardian,
        demo_accounts=run.demo_accounts,
        params=asdict(params),
        genesis_validators=dict(genesis),
    )
    if path is not None:
        deployment.save(Path(path))
    return deployment


def _genesis_set(validators: Sequence[str], weights: Sequence[int] | None) -> dict[str, int]:
    """The genesis set in ValidatorQuorum's order (ascending address), one weight each by default."""
    from web3 import Web3

    weights = [1] * len(validators) if weights is None else list(weights)
    if not validators or len(weights) != len(validators) or any(w <= 0 for w in weights):
        raise DeploymentError(
            "name a genesis validator set (at least one address, each with a positive weight): it signs the "
            "first epoch roots until an elected set replaces it"
        )
    genesis: dict[str, int] = {}
    for address, weight in zip(validators, weights, strict=True):
        if not Web3.is_address(address):
            raise DeploymentError(f"genesis validator {address!r} is not an address")
        genesis[Web3.to_checksum_address(address)] = weight
    if len(genesis) != len(validators):
        raise DeploymentError("a genesis validator is named twice")
    return dict(sorted(genesis.items(), key=lambda item: int(item[0], 16)))


class _Deployer:
    """The steps of one deployment, sharing the contracts deployed so far."""

    def __init__(
        self,
        w3,
        account,
        params: DeployParams,
        demo_accounts,
        named: Mapping[str, str],
        genesis: Mapping[str, int],
        payment_token: str | None,
        uniswap_router: str | None,
    ):
        from web3 import Web3

        self.w3 = w3
        self.account = account
        self.params = params
        self.demo_accounts = tuple(Web3.to_checksum_address(a) for a in demo_accounts)
        self.keeper = Web3.to_checksum_address(named["keeper"])
        self.guardian = Web3.to_checksum_address(named["guardian"])
        self.genesis = genesis
        self.payment_token = payment_token
        self.uniswap_router = uniswap_router
        self.addresses: dict[str, str] = {}
        self.contracts: dict[str, Any] = {}

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        token = (
            "local payment token (lUSD)"
            if self.payment_token is None
            else f"payment token at {self.payment_token}"
        )
        uniswap = (
            "Uniswap V2 factory (fee setter: the timelock), WETH9 and Router02"
            if self.uniswap_router is None
            else f"Uniswap V2 Router02 at {self.uniswap_router}"
        )
        return [
            ("POD token", self.deploy_pod),
            (token, self.deploy_payment_token),
            ("timelock", self.deploy_timelock),
            (uniswap, self.deploy_uniswap),
            ("payment/POD pair with initial liquidity (LP tokens to the timelock)", self.add_liquidity),
            ("parameters registry", lambda: self.deploy("ParamsRegistry", self.addresses["DolphinTimelock"])),
            ("staking vault and bonding", self.deploy_staking),
            ("governor (votes: POD, stkPOD and bonded stkPOD)", self.deploy_governor),
            (f"validator quorum (genesis set of {len(self.genesis)}) and slashing", self.deploy_quorum),
            ("buyback", self.deploy_buyback),
            ("credits", self.deploy_credits),
            ("rewards distributor, funded with the rewards supply", self.deploy_distributor),
            ("hand every admin role to the timelock", self.hand_over),
            (f"fund {len(self.demo_accounts)} demo accounts", self.fund_demo_accounts),
            ("move the rest of the treasury to the timelock", self.move_treasury),
        ]

    # ------------------------------------------------------------------ helpers

    def deploy(
        self, name: str, *args: Any, artifact: Artifact | None = None, as_name: str | None = None
    ) -> Any:
        contract = deploy_contract(self.w3, self.account, name, *args, artifact=artifact)
        self.addresses[as_name or name] = contract.address
        self.contracts[as_name or name] = contract
        return contract

    def bind(self, name: str, address: str, artifact: Artifact) -> None:
        """Record a contract that already exists at `address`."""
        if not read(lambda: self.w3.eth.get_code(address), f"reading code of {name}"):
            raise DeploymentError(f"no contract at {address} (the {name})")
        self.addresses[name] = address
        self.contracts[name] = self.w3.eth.contract(address=address, abi=artifact.abi)

    def transact(self, name: str, function: str, *args: Any) -> Any:
        call = getattr(self.contracts[name].functions, function)(*args)
        return send(self.w3, self.account, call, f"{name}.{function}")

    def role(self, name: str, role: str) -> bytes:
        return getattr(self.contracts[name].functions, role)().call()

    # ------------------------------------------------------------------ steps

    def deploy_pod(self) -> None:
        # The deployer receives both supplies for the bootstrap (liquidity, demo funds, distributor funding),
        # then hands the rest of the treasury to the timelock in the last step.
        me = self.account.address
        self.deploy("POD", me, self.params.treasury_supply, me, self.params.rewards_supply)

    def deploy_payment_token(self) -> None:
        if self.payment_token is None:
            self.deploy("LocalStablecoin", as_name="PaymentToken")
        else:
            self.bind("PaymentToken", self.payment_token, load_artifact("LocalStablecoin"))

    def deploy_timelock(self) -> None:
        # Executors [0x0]: anyone may execute a passed, queued proposal (OpenZeppelin's convention). The
        # deployer keeps the bootstrap admin role until the Governor is wired, then renounces it.
        self.deploy("DolphinTimelock", self.params.timelock_delay, [], [ZERO_ADDRESS], self.account.address)

    def deploy_uniswap(self) -> None:
        if self.uniswap_router is not None:
            self.bind(
                "UniswapV2Router02", self.uniswap_router, load_npm_artifact(_UNISWAP["UniswapV2Router02"])
            )
            router = self.contracts["UniswapV2Router02"].functions
            self.bind(
                "UniswapV2Factory", router.factory().call(), load_npm_artifact(_UNISWAP["UniswapV2Factory"])
            )
            self.bind("WETH9", router.WETH().call(), load_npm_artifact(_UNISWAP["WETH9"]))
            return
        # The factory's only power, choosing who collects the protocol fee, belongs to governance.
        timelock = self.addresses["DolphinTimelock"]
        self.deploy("UniswapV2Factory", timelock, artifact=load_npm_artifact(_UNISWAP["UniswapV2Factory"]))
        self.deploy("WETH9", artifact=load_npm_artifact(_UNISWAP["WETH9"]))
        self.deploy(
            "UniswapV2Router02",
            self.addresses["UniswapV2Factory"],
            self.addresses["WETH9"],
            artifact=load_npm_artifact(_UNISWAP["UniswapV2Router02"]),
        )

    def add_liquidity(self) -> None:
        me, router = self.account.address, self.addresses["UniswapV2Router02"]
        usd, pod = self.addresses["PaymentToken"], self.addresses["POD"]
        p = self.params
        if self.payment_token is None:
            self.transact("PaymentToken", "mint", me, p.pool_usd)
        else:
            held = self.contracts["PaymentToken"].functions.balanceOf(me).call()
            if held < p.pool_usd:
                raise DeploymentError(
                    f"the deployer holds {held} of the payment token's smallest units but the pair's initial "
                    f"liquidity needs {p.pool_usd}: fund {me} first"
                )
        self.transact("PaymentToken", "approve", router, p.pool_usd)
        self.transact("POD", "approve", router, p.pool_pod)
        deadline = self.w3.eth.get_block("latest")["timestamp"] + 3600
        self.transact(
            "UniswapV2Router02",
            "addLiquidity",
            usd,
            pod,
            p.pool_usd,
            p.pool_pod,
            p.pool_usd,
            p.pool_pod,
            self.addresses["DolphinTimelock"],  # the LP tokens are the treasury's, not the deployer's
            deadline,
        )
        pair = self.contracts["UniswapV2Factory"].functions.getPair(usd, pod).call()
        self.addresses["UniswapV2Pair"] = pair
        self.contracts["UniswapV2Pair"] = self.w3.eth.contract(
            address=pair, abi=load_npm_artifact(_UNISWAP["UniswapV2Pair"]).abi
        )

    def deploy_staking(self) -> None:
        me = self.account.address
        self.deploy("StakedPOD", self.addresses["POD"], me)
        self.deploy("Bonding", self.addresses["StakedPOD"], me)
        # Bonding redeems slashed shares to burn them, past the vault's cooldown.
        exempt = self.role("StakedPOD", "COOLDOWN_EXEMPT_ROLE")
        self.transact("StakedPOD", "grantRole", exempt, self.addresses["Bonding"])

    def deploy_governor(self) -> None:
        a, p, me = self.addresses, self.params, self.account.address
        self.deploy(
            "DolphinGovernor",
            a["POD"],
            a["StakedPOD"],
            a["Bonding"],
            a["DolphinTimelock"],
            p.voting_delay,
            p.voting_period,
            p.proposal_threshold,
            p.governor_quorum_bps,
        )
        governor = a["DolphinGovernor"]
        self.transact("DolphinTimelock", "grantRole", self.role("DolphinTimelock", "PROPOSER_ROLE"), governor)
        self.transact(
            "DolphinTimelock", "grantRole", self.role("DolphinTimelock", "CANCELLER_ROLE"), governor
        )
        self.transact(
            "DolphinTimelock", "renounceRole", self.role("DolphinTimelock", "DEFAULT_ADMIN_ROLE"), me
        )

    def deploy_quorum(self) -> None:
        a, p, me = self.addresses, self.params, self.account.address
        self.deploy(
            "ValidatorQuorum",
            a["Bonding"],
            a["ParamsRegistry"],
            me,
            p.validator_quorum_numerator,
            p.validator_quorum_denominator,
            list(self.genesis),
            list(self.genesis.values()),
        )
        self.deploy("Slashing", a["Bonding"], a["ValidatorQuorum"], me)
        self.transact("Slashing", "setSlashBps", p.slash_bps)
        # Bound once, for good: no governance path can name another slasher.
        self.transact("Bonding", "bindSlasher", a["Slashing"])

    def deploy_buyback(self) -> None:
        a, p = self.addresses, self.params
        self.deploy(
            "Buyback",
            a["UniswapV2Router02"],
            a["PaymentToken"],
            a["POD"],
            a["StakedPOD"],
            self.account.address,
            p.twap_window,
            p.max_slippage_bps,
            p.max_swap_amount,
        )
        self.transact("Buyback", "grantRole", self.role("Buyback", "KEEPER_ROLE"), self.keeper)

    def deploy_credits(self) -> None:
        a = self.addresses
        self.deploy(
            "Credits",
            a["PaymentToken"],
            a["ValidatorQuorum"],
            a["Buyback"],
            self.params.credits_withdrawal_delay,
            self.params.default_price,
            a["DolphinTimelock"],
        )

    def deploy_distributor(self) -> None:
        a, p = self.addresses, self.params
        self.deploy(
            "RewardsDistributor",
            a["POD"],
            a["StakedPOD"],
            a["Bonding"],
            a["ValidatorQuorum"],
            self.account.address,
            p.root_delay,
            p.bond_bonus_bps,
        )
        # Bound once, for good: validator sets change only through activated epoch roots.
        self.transact("ValidatorQuorum", "bindInstaller", a["RewardsDistributor"])
        self.transact("POD", "transfer", a["RewardsDistributor"], p.rewards_supply)
        if self.guardian != self.account.address:
            revoker = self.role("RewardsDistributor", "REVOKER_ROLE")
            self.transact("RewardsDistributor", "grantRole", revoker, self.guardian)

    def hand_over(self) -> None:
        """Give the timelock every role the deployer got from a constructor, then renounce the deployer's."""
        me, timelock = self.account.address, self.addresses["DolphinTimelock"]
        extra_roles = {
            "Bonding": ["PARAMETERS_ROLE"],
            "ValidatorQuorum": ["PARAMETERS_ROLE"],
            "Slashing": ["PARAMETERS_ROLE"],
            "RewardsDistributor": ["REVOKER_ROLE"],
        }
        for name in ("StakedPOD", "Bonding", "ValidatorQuorum", "Slashing", "Buyback", "RewardsDistributor"):
            admin = self.role(name, "DEFAULT_ADMIN_ROLE")
            for role_name in extra_roles.get(name, []):
                role = self.role(name, role_name)
                self.transact(name, "grantRole", role, timelock)
                # The deployer stays a revoker only as the rewards guardian.
                if not (role_name == "REVOKER_ROLE" and self.guardian == me):
                    self.transact(name, "renounceRole", role, me)
            self.transact(name, "grantRole", admin, timelock)
            self.transact(name, "renounceRole", admin, me)

    def fund_demo_accounts(self) -> None:
        p = self.params
        for address in self.demo_accounts:
            self.transact("POD", "transfer", address, p.demo_pod)
            self.transact("PaymentToken", "mint", address, p.demo_usd)
            balance = self.w3.eth.get_balance(address)
            if balance < p.demo_min_eth:
                send_value(
                    self.w3, self.account, address, p.demo_min_eth - balance, f"sending ETH to {address}"
                )

    def move_treasury(self) -> None:
        me = self.account.address
        rest = self.contracts["POD"].functions.balanceOf(me).call()
        if rest:
            self.transact("POD", "transfer", self.addresses["DolphinTimelock"], rest)
