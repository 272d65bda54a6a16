"""`dolphin chain`: deploy the contracts, and what operators, validators and API users do on chain.

Where things come from (every command):
- the RPC URL: --rpc-url, $DOLPHIN_RPC_URL, else the `ready.json` that `dolphin chain deploy` wrote into
  the data dir;
- the data dir: --data-dir, $DOLPHIN_DATA_DIR, else ~/.dolphin;
- the deployment file: --deployment, $DOLPHIN_DEPLOYMENT, else <data dir>/deployment-<chain id>.json;
- the signing key: --key-file (a file holding the hex private key; $DOLPHIN_KEY_FILE), or the hex key
  itself in $DOLPHIN_PRIVATE_KEY. Keys are never printed.
Amounts are decimal POD (or lUSD for credits), e.g. 1000 or 0.25.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import click
import trio

from chain.client import (
    POD_DECIMALS,
    USD_DECIMALS,
    VALIDATOR_BOND,
    ChainClient,
    ClientError,
    ValidatorSet,
    bond_validators,
    checked_address,
    format_time,
    format_units,
    parse_units,
    read_key_file,
)
from chain.deploy import DeployParams, deploy_system, deployment_path
from chain.devchain import (
    DEFAULT_CHAIN_ID,
    DEV_GENESIS_VALIDATOR_INDICES,
    DevChain,
    dev_genesis_validators,
    dev_private_keys,
    serve_devchain,
    time_travel,
)
from chain.errors import ChainError
from chain.locate import ChainLocation
from chain.merkle import RewardsTree
from chain.transactions import connect, read
from node.errors import ModelError
from node.models import load_manifest
from p2p import HostConfig, P2PError, open_host
from pool.errors import TreeUnavailable
from pool.validator_peers import fetch_rewards_tree
from pool.watch import parse_model_id
from runtime.files import write_atomically
from runtime.home import chain_home
from runtime.ready import DataDirInUse

SHARE_DECIMALS = 24
"""stkPOD: POD's 18 decimals plus the vault's offset of 6."""
PROFILES = {"network": DeployParams(), "dev": DeployParams(root_delay=3600, timelock_delay=3600)}
"""Deployment parameters by --profile: a network's, or a dev chain's with the shortest delays the
contracts allow (RewardsDistributor.MIN_ROOT_DELAY, DolphinTimelock.MIN_DELAY_FLOOR: 1 hour)."""


@dataclass(frozen=True)
class Connection(ChainLocation):
    """Where a command's chain, deployment and key come from (see the module docstring)."""

    key_file: Path | None = None

    def key(self, required: bool = True) -> str | None:
        if self.key_file is not None:
            return read_key_file(self.key_file)
        if os.environ.get("DOLPHIN_PRIVATE_KEY"):
            return os.environ["DOLPHIN_PRIVATE_KEY"].strip()
        if required:
            raise ClientError("this command signs a transaction: pass --key-file FILE (or DOLPHIN_KEY_FILE)")
        return None

    def client(self, key_required: bool = True) -> ChainClient:  # type: ignore[override]  # a flag, not a key
        return super().client(self.key(key_required))


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --rpc-url, --data-dir, --deployment and --key-file, passed on as one `connection`."""

    @click.option("--rpc-url", envvar="DOLPHIN_RPC_URL", help="JSON-RPC URL of the chain.")
    @click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DOLPHIN_DATA_DIR",
        help="Where deployment files and ready.json live [default: ~/.dolphin].",
    )
    @click.option(
        "--deployment",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="DOLPHIN_DEPLOYMENT",
        help="Deployment file [default: <data dir>/deployment-<chain id>.json].",
    )
    @click.option(
        "--key-file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="DOLPHIN_KEY_FILE",
        help="File holding the account's hex private key (or set DOLPHIN_PRIVATE_KEY).",
    )
    @wraps(command)
    def wrapper(rpc_url, data_dir, deployment, key_file, **kwargs):
        connection = Connection(rpc_url, data_dir or chain_home(), deployment, key_file)
        try:
            return command(connection, **kwargs)
        except ChainError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def pod_amount(text: str | None) -> int | None:
    return None if text is None else parse_units(text, POD_DECIMALS)


def pod(value: int) -> str:
    return f"{format_units(value, POD_DECIMALS)} POD"


def shares(value: int) -> str:
    return f"{format_units(value, SHARE_DECIMALS)} stkPOD"


@click.group("chain")
def group() -> None:
    """Contracts: deploy, stake, bond, claim rewards, credits.

    The RPC URL, deployment file and key come from options or environment variables (DOLPHIN_RPC_URL,
    DOLPHIN_DATA_DIR, DOLPHIN_DEPLOYMENT, DOLPHIN_KEY_FILE or DOLPHIN_PRIVATE_KEY); after a plain
    `dolphin chain deploy`, the other commands find its chain through ready.json in the data dir.
    """


# ---------------------------------------------------------------------------------------------- deploy


@group.command("deploy")
@click.option("--rpc-url", envvar="DOLPHIN_RPC_URL", help="Deploy there and exit [default: start Anvil].")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DOLPHIN_DATA_DIR",
    help="Where the deployment file (and ready.json) go [default: ~/.dolphin].",
)
@click.option(
    "--deployment",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the deployment file here [default: <data dir>/deployment-<chain id>.json].",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DOLPHIN_KEY_FILE",
    help="Deployer's key file (or DOLPHIN_PRIVATE_KEY) [default on a dev chain: its first account].",
)
@click.option(
    "--demo-accounts",
    type=click.IntRange(0, 50),
    default=None,
    help="Fund this many dev-mnemonic accounts after the deployer [default: 9 on a dev chain, else 0].",
)
@click.option(
    "--genesis-validator",
    "genesis",
    multiple=True,
    metavar="ADDRESS",
    help="A member of the genesis validator set, weight 1 (repeatable) [default on a dev chain: dev accounts "
    "1, 2 and 3].",
)
@click.option(
    "--payment-token",
    metavar="ADDRESS",
    help="The stablecoin credits are paid in [dev chain default: a new LocalStablecoin; required elsewhere].",
)
@click.option(
    "--keeper",
    metavar="ADDRESS",
    help="Runs the buyback [dev chain default: the deployer; required elsewhere].",
)
@click.option(
    "--guardian",
    metavar="ADDRESS",
    help="May revoke a pending rewards root [dev chain default: the deployer; required elsewhere].",
)
@click.option(
    "--uniswap-router", metavar="ADDRESS", help="An existing Uniswap V2 Router02 [default: deploy one]."
)
@click.option("--reuse", is_flag=True, help="If this chain already has a deployment, check it and use it.")
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="network",
    show_default=True,
    help="dev: the shortest delays the contracts allow (a rewards root activates after 1 hour, not 2 days); "
    "move a dev chain's clock past them with `dolphin chain advance`.",
)
@click.option(
    "--block-time",
    type=click.IntRange(0, 3600),
    default=1,
    show_default=True,
    help="With no --rpc-url: the local chain also mines an empty block every this many seconds, so time "
    "passes on chain as on a live one (0: only when a transaction arrives).",
)
def deploy_command(
    rpc_url, data_dir, deployment, key_file, demo_accounts, genesis, payment_token, keeper, guardian,
    uniswap_router, reuse, profile, block_time,
) -> None:  # fmt: skip
    """Deploy every contract, Uniswap V2 and demo funds.

    With no --rpc-url, starts a local Anvil chain on a free port, deploys to it, writes ready.json
    (RPC URL, chain id, deployment file) into the data dir, and keeps the chain running until Ctrl-C.
    On a dev chain it also writes funded keys for each role into <data dir>/keys (see DEV_KEYS).
    A second deploy to the same chain is refused unless --reuse. On a chain that is not a dev chain
    (chain id 31337), --payment-token, --keeper, --guardian and --genesis-validator are required: every
    power goes to the timelock or to the accounts named.
    """
    data_dir = data_dir or chain_home()
    named = {
        "genesis": genesis,
        "payment_token": payment_token,
        "keeper": keeper,
        "guardian": guardian,
        "uniswap_router": uniswap_router,
        "params": PROFILES[profile],
    }
    try:
        if rpc_url:
            _deploy(rpc_url, data_dir, deployment, key_file, demo_accounts, reuse, named)
            return
        accounts = 1 + (9 if demo_accounts is None else demo_accounts)

        def deploy(dev: DevChain) -> Path:
            return _deploy(dev.rpc_url, data_dir, deployment, key_file, demo_accounts, reuse, named)

        def on_ready(dev: DevChain, ready: Path) -> None:
            click.echo(f"Chain running at {dev.rpc_url} (ready: {ready}); Ctrl-C stops it.")

        try:
            serve_devchain(
                data_dir, deploy, accounts=max(accounts, 2), block_time=block_time or None, on_ready=on_ready
            )
        except DataDirInUse as error:
            raise click.ClickException(f"{error}, or stop the other chain first") from None
        click.echo("Stopped the chain.")
    except ChainError as error:
        raise click.ClickException(str(error)) from None


def _deploy(rpc_url, data_dir, deployment, key_file, demo_accounts, reuse, named) -> Path:
    from eth_account import Account
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    w3 = connect(rpc_url)
    chain_id = read(lambda: w3.eth.chain_id, "reading the chain id", rpc_url=rpc_url)
    dev_chain = chain_id == DEFAULT_CHAIN_ID
    count = demo_accounts if demo_accounts is not None else (9 if dev_chain else 0)
    if key_file is not None:
        key = read_key_file(key_file)
    elif os.environ.get("DOLPHIN_PRIVATE_KEY"):
        key = os.environ["DOLPHIN_PRIVATE_KEY"].strip()
    elif dev_chain:
        key = dev_private_keys(1)[0]
    else:
        raise ClientError(f"chain {chain_id} is not a dev chain: pass the deployer's --key-file")
    if named["genesis"]:
        genesis = [checked_address(a) for a in named["genesis"]]
    elif dev_chain:
        genesis = dev_genesis_validators()
    else:
        raise ClientError(
            f"chain {chain_id} is not a dev chain: name the genesis set with --genesis-validator"
        )
    demo = [Account.from_key(k).address for k in dev_private_keys(count + 1)[1:]] if count else []
    path = deployment or deployment_path(data_dir, chain_id)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("deploying", total=None)

        steps: list[str] = []

        def on_step(index: int, total: int, description: str) -> None:
            steps.append(description)
            progress.update(task, total=total, completed=index, description=description)

        result = deploy_system(
            w3,
            key,
            genesis_validators=genesis,
            path=path,
            demo_accounts=demo,
            keeper=named["keeper"],
            guardian=named["guardian"],
            payment_token=named["payment_token"],
            uniswap_router=named["uniswap_router"],
            params=named["params"],
            reuse=reuse,
            on_step=on_step,
        )
        progress.update(task, total=len(steps), completed=len(steps), description="done")
    if not steps:  # --reuse found a complete deployment: nothing was sent
        click.echo(f"Reusing the deployment on chain {result.chain_id} from {result.timestamp} ({path}).")
        return Path(path)
    click.echo(f"Deployment on chain {result.chain_id} (block {result.block}) written to {path}")
    for name, address in result.addresses.items():
        click.echo(f"  {name:<20} {address}")
    if demo:
        click.echo(f"Funded {len(demo)} demo accounts (dev mnemonic, indices 1..{len(demo)}).")
    click.echo(f"Genesis validators: {', '.join(result.genesis_validators)}.")
    if dev_chain and not named["genesis"]:
        if count >= max(DEV_GENESIS_VALIDATOR_INDICES):
            # A root installs the next set only from members holding the minimum bond: unbonded, the dev
            # genesis set would settle one epoch and never activate its root.
            keys = dev_private_keys(max(DEV_GENESIS_VALIDATOR_INDICES) + 1)
            bond_validators([ChainClient(rpc_url, result, keys[i]) for i in DEV_GENESIS_VALIDATOR_INDICES])
            click.echo(
                f"Genesis validators staked and bonded {format_units(VALIDATOR_BOND, 18)} POD each "
                "(keys validator-1.key … validator-3.key)."
            )
        _write_dev_keys(data_dir / DEV_KEYS_DIR, count)
    return Path(path)


DEV_KEYS_DIR = "keys"
DEV_KEYS = {
    "operator": 4,  # a node operator: stake, bond, `dolphin node register`, claim
    "me": 5,  # an API user: credits for `dolphin gateway` and `dolphin ask`
    "validator": 7,  # a validator to be: stake, bond and join (docs/validator.md)
    "validator-1": 1,  # the genesis validator set (two of three are a quorum)
    "validator-2": 2,
    "validator-3": 3,
}
"""The dev-mnemonic accounts `dolphin chain deploy` writes a key file for, by role (file <role>.key)."""


def _write_dev_keys(keys_dir: Path, funded: int) -> None:
    """Key files (mode 0600) for the roles of DEV_KEYS whose account was funded; the dev mnemonic's keys
    are public, so these hold test funds only."""
    keys = dev_private_keys(max(DEV_KEYS.values()) + 1)
    keys_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for role, index in DEV_KEYS.items():
        if index > funded:
            continue
        write_atomically(keys_dir / f"{role}.key", (keys[index] + "\n").encode(), mode=0o600)
        written.append(f"{role}.key")
    if written:
        click.echo(f"Dev keys (funded, test funds only) in {keys_dir}: {', '.join(written)}.")


@group.command("advance")
@click.argument("seconds", type=click.IntRange(1, 10 * 365 * 86400))
@connection_options
def advance_command(connection: Connection, seconds: int) -> None:
    """Move a dev chain's clock SECONDS ahead and mine a block there: how a local network gets past the
    rewards root delay, a cooldown or a thaw without waiting. Refused on any chain but a dev chain."""
    rpc_url = connection.resolved_rpc_url()
    w3 = connect(rpc_url)
    chain_id = read(lambda: w3.eth.chain_id, "reading the chain id", rpc_url=rpc_url)
    if chain_id != DEFAULT_CHAIN_ID:
        raise ClientError(f"chain {chain_id} is not a dev chain ({DEFAULT_CHAIN_ID}): its clock is real time")
    timestamp = read(lambda: time_travel(w3, seconds), "moving the dev chain's clock", rpc_url=rpc_url)
    click.echo(f"the dev chain's clock is now {format_time(timestamp)} ({seconds} s ahead)")


# ---------------------------------------------------------------------------------------------- staking


@group.command("stake")
@click.argument("amount")
@connection_options
def stake_command(connection: Connection, amount: str) -> None:
    """Stake AMOUNT POD into the vault (stkPOD)."""
    client = connection.client()
    minted = client.stake(parse_units(amount, POD_DECIMALS))
    click.echo(f"Staked {amount} POD for {shares(minted)}.")


@group.command("cooldown")
@connection_options
def cooldown_command(connection: Connection) -> None:
    """Start the 90-day cooldown that unstaking needs.

    It covers the stkPOD you hold now; redeem within 7 days after it ends.
    """
    client = connection.client()
    unlock, covered = client.cooldown()
    click.echo(
        f"Cooldown started for {shares(covered)}: run `dolphin chain redeem` from "
        f"{format_time(unlock, client.chain_time())}, within the 7-day unstake window."
    )


@group.command("redeem")
@click.argument("amount", required=False)
@connection_options
def redeem_command(connection: Connection, amount: str | None) -> None:
    """Unstake POD after the cooldown.

    AMOUNT POD, or by default every share your cooldown covers.
    """
    client = connection.client()
    paid = client.redeem(pod_amount(amount))
    click.echo(f"Redeemed {pod(paid)}.")


# ---------------------------------------------------------------------------------------------- bonding


@group.command("bond")
@click.argument("amount", required=False)
@connection_options
def bond_command(connection: Connection, amount: str | None) -> None:
    """Bond stkPOD to your operator account.

    Bonds stkPOD worth AMOUNT POD, or by default all your stkPOD.
    """
    client = connection.client()
    bonded = client.bond(pod_amount(amount))
    click.echo(f"Bonded {shares(bonded)}; active bond now {pod(client.status().active_bond_value)}.")


@group.command("unbond")
@click.argument("amount", required=False)
@connection_options
def unbond_command(connection: Connection, amount: str | None) -> None:
    """Start unbonding: the stake thaws for the Bonding contract's `thawPeriod` (governance sets it, 30 to 365
    days; 90 at launch).

    Thaws bond worth AMOUNT POD, or by default all of it; `dolphin chain withdraw` pays it back after
    the thaw period.
    """
    client = connection.client()
    request_id, unlock, thawing = client.unbond(pod_amount(amount))
    click.echo(
        f"Unbond request {request_id} thaws {shares(thawing)} until "
        f"{format_time(unlock, client.chain_time())}: then run `dolphin chain withdraw`."
    )


@group.command("withdraw")
@click.argument("request_id", type=int, required=False)
@connection_options
def withdraw_command(connection: Connection, request_id: int | None) -> None:
    """Withdraw thawed unbond requests as stkPOD.

    REQUEST_ID, or by default every request that has thawed.
    """
    for withdrawn_id, paid in connection.client().withdraw_unbonded(request_id):
        click.echo(f"Withdrew unbond request {withdrawn_id}: {shares(paid)}.")


@group.group("validators")
def validators_group() -> None:
    """The validator set: opt in or out of elections, show the current set.

    The set changes only when an epoch's rewards root is activated: it installs the set the validators
    elected with it. Members need 100,000 POD-worth of active bond (ParamsRegistry `validator_min_bond`)
    and must have joined.
    """


@validators_group.command("join")
@connection_options
def join_command(connection: Connection) -> None:
    """Opt in to being elected, with your active bond."""
    bonded = connection.client().join_validators()
    click.echo(
        f"Joined the validators: the next epoch closes may elect you, weighing your active bond of "
        f"{shares(bonded)}."
    )


@validators_group.command("leave")
@connection_options
def leave_command(connection: Connection) -> None:
    """Opt out of being elected."""
    connection.client().leave_validators()
    click.echo("Left the validators: you stay in the current set until the next one is installed.")


@validators_group.command("show")
@connection_options
def show_command(connection: Connection) -> None:
    """Show the current validator set, its epoch and weights."""
    client = connection.client(key_required=False)
    current = client.validator_set()
    numerator, denominator = client.validator_quorum.quorum()
    origin = "genesis set" if current.epoch == 0 else f"elected with the root of epoch {current.epoch}"
    click.echo(
        f"{len(current.members)} validators ({origin}); quorum {numerator}/{denominator} of the weight"
    )
    for member, weight in zip(current.members, current.weights, strict=True):
        click.echo(f"  {member}  weight {weight:,} ({weight * 100 / current.total:.1f}%)")


# ---------------------------------------------------------------------------------------------- rewards


def _tree(path: Path) -> RewardsTree:
    return RewardsTree.from_json(path.read_text())


TREE_OPTION = click.option(
    "--tree",
    "tree_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The epoch's rewards tree document (chain.merkle format, from the settler).",
)


@group.command("claim")
@click.option(
    "--tree",
    "tree_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The active epoch's rewards tree document (chain.merkle format, as validators write it).",
)
@click.option(
    "--bootstrap",
    multiple=True,
    envvar="DOLPHIN_BOOTSTRAP",
    help="Instead of --tree: fetch the active epoch's tree from the validators through this peer "
    "(/ip4/…/tcp/…/p2p/<peer-id>, repeatable); its root is checked against the chain's.",
)
@click.option("--bonded", is_flag=True, help="Stake and bond the rewards, with the bonded-claim bonus.")
@connection_options
def claim_command(
    connection: Connection, tree_path: Path | None, bootstrap: tuple[str, ...], bonded: bool
) -> None:
    """Claim your rewards: liquid POD, or --bonded.

    The tree must be the one of the active root (see `dolphin chain status`): give its file with --tree,
    or let the command fetch it from the network's validators with --bootstrap.
    """
    client = connection.client()
    if tree_path is not None:
        tree = _tree(tree_path)
    elif bootstrap:
        epoch, root = client.rewards_distributor.active_root()
        if epoch == 0:
            raise click.ClickException("no rewards root is active yet: nothing to claim")
        tree = _fetch_tree(bootstrap, epoch, root)
        click.echo(f"Fetched the rewards tree of epoch {epoch} from the validators (root checked).")
    else:
        raise click.ClickException("give the rewards tree: --tree FILE, or --bootstrap MULTIADDR to fetch it")
    result = client.claim(tree, bonded=bonded)
    if result.bonded:
        click.echo(
            f"Claimed {pod(result.amount)} plus a {pod(result.bonus)} bonus, "
            f"bonded as {shares(result.shares)}."
        )
    else:
        click.echo(f"Claimed {pod(result.amount)}.")


def _fetch_tree(bootstrap: tuple[str, ...], epoch: int, root: bytes) -> RewardsTree:
    """The rewards tree of `epoch` from the validators, through a throwaway light peer."""

    async def fetch() -> RewardsTree:
        with tempfile.TemporaryDirectory(prefix="dolphin-claim-") as data_dir:
            async with open_host(HostConfig.light_client(Path(data_dir), bootstrap=bootstrap)) as host:
                return await fetch_rewards_tree(host, epoch, root)

    try:
        return trio.run(fetch)
    except (TreeUnavailable, P2PError) as exc:
        raise click.ClickException(f"{exc}\nCheck --bootstrap, or pass the tree file with --tree.") from None


@group.group("root")
def root_group() -> None:
    """Settle an epoch's rewards root.

    Validators sign, anyone proposes with a quorum of signatures, and after the root delay anyone
    activates it.
    """


EPOCH_OPTION = click.option("--epoch", type=click.IntRange(0), required=True, help="The epoch closed.")
DEADLINE_OPTION = click.option(
    "--deadline", type=click.IntRange(0), required=True, help="Unix time the signatures expire."
)
NEXT_SET_OPTION = click.option(
    "--next-validator",
    "next_validators",
    multiple=True,
    metavar="ADDRESS=WEIGHT",
    help="A member of the validator set this root elects, weight in stkPOD shares (repeatable) "
    "[default: carry the current set forward].",
)


def _next_set(client: ChainClient, entries: tuple[str, ...]) -> ValidatorSet:
    if not entries:
        return client.validator_set()
    weights = {}
    for entry in entries:
        address, _, weight = entry.partition("=")
        if not weight.isdigit():
            raise click.BadParameter(f"{entry!r} is not ADDRESS=WEIGHT", param_hint="--next-validator")
        weights[address] = int(weight)
    return ValidatorSet.of(weights)


@root_group.command("sign")
@TREE_OPTION
@EPOCH_OPTION
@DEADLINE_OPTION
@NEXT_SET_OPTION
@connection_options
def root_sign_command(
    connection: Connection, tree_path: Path, epoch: int, deadline: int, next_validators
) -> None:
    """Sign an epoch root as a validator.

    Prints the EIP-712 signature of EpochRoot(epoch, root, total, validators, weights, deadline), where
    validators and weights are the next validator set.
    """
    client = connection.client()
    signature = client.sign_epoch_root(epoch, _tree(tree_path), deadline, _next_set(client, next_validators))
    click.echo("0x" + signature.hex())


@root_group.command("propose")
@TREE_OPTION
@EPOCH_OPTION
@DEADLINE_OPTION
@NEXT_SET_OPTION
@click.option("--signature", "signatures", multiple=True, required=True, help="A validator's signature.")
@connection_options
def root_propose_command(
    connection: Connection, tree_path: Path, epoch: int, deadline: int, next_validators, signatures
):
    """Propose a root with validator signatures (made with the same next validator set)."""
    try:
        raw = [bytes.fromhex(s.removeprefix("0x")) for s in signatures]
    except ValueError:
        raise click.BadParameter("signatures are hex strings", param_hint="--signature") from None
    client = connection.client()
    next_set = _next_set(client, next_validators)
    activates = client.propose_root(epoch, _tree(tree_path), deadline, raw, next_set)
    click.echo(
        f"Proposed the root of epoch {epoch}: activate it from {format_time(activates, client.chain_time())} "
        f"with `dolphin chain root activate {epoch}`."
    )


_ROOT_STAGES = ("none", "pending", "activated")


@root_group.command("show")
@click.argument("epoch", type=click.IntRange(0))
@click.option(
    "--wait",
    type=click.Choice(["pending", "activated"]),
    help="Wait until EPOCH's root is proposed (pending) or active; exit 1 after --timeout.",
)
@click.option(
    "--timeout", type=click.FloatRange(0), default=600.0, show_default=True, help="Seconds --wait waits."
)
@connection_options
def root_show_command(connection: Connection, epoch: int, wait: str | None, timeout: float) -> None:
    """Show the state of EPOCH's rewards root (none, pending and when it may be activated, revoked or
    activated) and which root is active: what a script waits on between an epoch's end and a claim."""
    client = connection.client(key_required=False)
    deadline = time.monotonic() + timeout
    status, activates_at = client.root_status(epoch)
    while wait is not None and status != "revoked" and _ROOT_STAGES.index(status) < _ROOT_STAGES.index(wait):
        if time.monotonic() >= deadline:
            raise click.ClickException(f"the root of epoch {epoch} is still {status} after {timeout:g} s")
        time.sleep(2.0)
        status, activates_at = client.root_status(epoch)
    if status == "pending":
        click.echo(f"epoch {epoch}: pending, activates from {format_time(activates_at, client.chain_time())}")
    else:
        click.echo(f"epoch {epoch}: {status}")
    active_epoch, root = client.rewards_distributor.active_root()
    if active_epoch:
        click.echo(f"active root: epoch {active_epoch} 0x{root.hex()}")
    else:
        click.echo("no active root yet")
    if status == "revoked":
        raise click.ClickException(f"the root of epoch {epoch} was revoked")


@root_group.command("activate")
@click.argument("epoch", type=click.IntRange(0))
@connection_options
def root_activate_command(connection: Connection, epoch: int) -> None:
    """Activate the pending root of EPOCH and install the validator set it elected."""
    installed = connection.client().activate_root(epoch)
    click.echo(f"Activated the root of epoch {epoch}; {len(installed.members)} validators now sign.")


# ---------------------------------------------------------------------------------------------- credits


@group.group("credits")
def credits_group() -> None:
    """Prepaid inference credit (lUSD on a dev chain)."""


@credits_group.command("deposit")
@click.argument("amount")
@click.option(
    "--for",
    "user",
    metavar="ADDRESS",
    help="Credit this address instead of the key's own (e.g. a validator's challenge wallet); the key pays.",
)
@connection_options
def credits_deposit_command(connection: Connection, amount: str, user: str | None) -> None:
    """Deposit AMOUNT of the payment token as credit."""
    credit = connection.client().credits_deposit(parse_units(amount, USD_DECIMALS), user)
    whose = f"{checked_address(user)}'s credit" if user is not None else "credit"
    click.echo(f"Deposited {amount}; {whose} now {format_units(credit, USD_DECIMALS)}.")


@credits_group.command("withdraw")
@click.argument("amount", required=False)
@connection_options
def credits_withdraw_command(connection: Connection, amount: str | None) -> None:
    """Request or complete a credit withdrawal.

    With AMOUNT: request it (it unlocks after a delay). Without: complete the unlocked request.
    """
    client = connection.client()
    if amount is not None:
        unlock = client.credits_request_withdrawal(parse_units(amount, USD_DECIMALS))
        click.echo(
            f"Withdrawal of {amount} requested: run `dolphin chain credits withdraw` from "
            f"{format_time(unlock, client.chain_time())}."
        )
    else:
        paid = client.credits_withdraw()
        click.echo(f"Withdrew {format_units(paid, USD_DECIMALS)}.")


@credits_group.command("price")
@click.argument("model")
@connection_options
def credits_price_command(connection: Connection, model: str) -> None:
    """Show what a million tokens of MODEL cost.

    MODEL is a model id (the 64 hex digits of its manifest hash) or a model folder (its manifest's id).
    Prompt and answer tokens cost the same; settlement debits each client price x tokens of its paid
    answers every epoch.
    """
    model_id: bytes | None
    if Path(model).is_dir():
        try:
            model_id = load_manifest(Path(model)).model_id()
        except ModelError as exc:
            raise click.BadParameter(str(exc), param_hint="MODEL") from None
    else:
        model_id = parse_model_id(model)
    if model_id is None:
        raise click.BadParameter(
            "a model id is 64 hex digits, or give the model's folder (see `dolphin model verify`)",
            param_hint="MODEL",
        )
    price = connection.client(key_required=False).price_of(model_id)
    click.echo(f"{format_units(price, USD_DECIMALS)} per million tokens")


# ---------------------------------------------------------------------------------------------- status


@group.command("status")
@click.option("--account", help="Show this address instead of the key's.")
@connection_options
def status_command(connection: Connection, account: str | None) -> None:
    """Show an account's balances, stake, bond and credit, and the network's revenue and buybacks.

    Revenue is what Credits debited from API users; all of it buys POD for stakers, which raises what
    one stkPOD is worth.
    """
    client = connection.client(key_required=account is None)
    s = client.status(account)
    now = s.chain_time
    lines = [
        f"account      {s.address}",
        f"chain        {client.deployment.chain_id} at block {s.block}, {format_time(now)}",
        f"ETH          {format_units(s.eth, 18)}",
        f"POD          {format_units(s.pod, POD_DECIMALS)}",
        f"lUSD         {format_units(s.usd, USD_DECIMALS)}",
        f"staked       {shares(s.staked_shares)} = {pod(s.staked_value)}",
    ]
    if s.cooldown_start:
        unlock = s.cooldown_start + client.staked_pod.cooldown_period()
        lines.append(f"cooldown     {shares(s.cooldown_shares)}, redeemable from {format_time(unlock, now)}")
    lines.append(f"active bond  {shares(s.active_bond_shares)} = {pod(s.active_bond_value)}")
    if s.thawing_shares:
        lines.append(f"thawing      {shares(s.thawing_shares)}")
    for request_id, unlock, thawing in s.unbond_requests:
        lines.append(f"  request {request_id}: {shares(thawing)} unlocks {format_time(unlock, now)}")
    joined = "joined" if s.validator_joined else "not joined"
    member = f"in the current set, weight {s.validator_weight:,}" if s.validator_weight else "not in the set"
    lines.append(f"validator    {joined}, {member}")
    lines.append(f"credit       {format_units(s.credit, USD_DECIMALS)}")
    amount, unlock = s.credit_withdrawal
    if unlock:
        lines.append(f"  withdrawal {format_units(amount, USD_DECIMALS)} unlocks {format_time(unlock, now)}")
    epoch, root, total = s.active_root
    lines.append(f"rewards      claimed {pod(s.rewards_claimed)}; active root epoch {epoch} {root}")
    lines.append(f"             (cumulative total {pod(total)})")
    money = client.money_status()
    lines.append(
        f"network      revenue {format_units(money.revenue, USD_DECIMALS)} lUSD, "
        f"{format_units(money.awaiting_buyback, USD_DECIMALS)} awaiting buyback"
    )
    lines.append(
        f"             POD bought back {pod(money.pod_bought_back)}; 1 stkPOD = {pod(money.share_price)}"
    )
    click.echo("\n".join(lines))


# ---------------------------------------------------------------------------------------------- settlement


@group.command("snapshot")
@click.option("--block", type=click.IntRange(0), required=True, help="The block that closes the epoch.")
@click.option(
    "--base-rewards",
    type=click.File("rb"),
    help='JSON object {"0xADDRESS": "wei", ...}: the epoch\'s base rewards from receipts.',
)
@click.option(
    "--previous", type=click.File("rb"), help="The previous epoch's `dolphin rewards close-epoch` output."
)
@click.option("--epoch-start-block", type=click.IntRange(0), help="Slashes count from this block.")
@click.option("--banned", multiple=True, help="An account suspended off chain (repeatable).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the document here instead of stdout.",
)
@connection_options
def snapshot_command(
    connection: Connection, block, base_rewards, previous, epoch_start_block, banned, output
):
    """Read an epoch's on-chain inputs as a close-epoch document.

    Active bonds at --block (in POD), registered and suspended state, and the ParamsRegistry's
    parameters, joined with the base rewards and the previous close: the input of
    `dolphin rewards close-epoch` (docs/rewards.md, "Exchange format").
    """
    from chain.rewards import encode_document
    from chain.snapshot import epoch_inputs, previous_from_output, read_snapshot

    try:
        rewards = {a: int(v) for a, v in json.loads(base_rewards.read()).items()} if base_rewards else {}
    except (ValueError, AttributeError) as exc:
        raise click.BadParameter(
            f"not a JSON object of decimal strings ({exc})", param_hint="--base-rewards"
        ) from None
    client = connection.client(key_required=False)
    snapshot = read_snapshot(client, block, accounts=rewards, epoch_start_block=epoch_start_block)
    carried = previous_from_output(previous.read()) if previous else None
    document = encode_document(
        snapshot.params, epoch_inputs(snapshot, rewards, previous=carried, banned=banned)
    )
    if output is None:
        click.echo(document)
    else:
        output.write_text(document + "\n", encoding="ascii")
