"""`dolphin demo`: a whole local network answering one encrypted prompt and settling the epoch on chain.

Real parts only, all on this machine: an Anvil chain with every contract deployed, three validators and
one node operator with bonded stake, an API user with credit, three libp2p hosts on 127.0.0.1 (a
relay/bootstrap peer, the node reachable only through the relay, a light client paying with the user's
credit authorisation), a real model answering through transformers, then the epoch's receipts settled:
the user's credit debited into the buyback, and a Merkle root of rewards the validators sign and the
operator claims from.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click
import trio
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chain.client import ChainClient, format_units
from chain.deploy import deploy_system, deployment_path
from chain.devchain import DEV_GENESIS_VALIDATOR_INDICES, dev_genesis_validators, open_devchain
from chain.locate import ChainLocation
from chain.rewards import POD
from chain.testing import make_validators, time_travel
from chain.transactions import connect
from node.config import NodeConfig
from node.daemon import serve_node
from node.errors import ModelError
from node.ledger import read_ledger
from node.models import build_tiny_model, import_smollm2, load_manifest, verify_model_dir
from node.registration import register_node
from p2p import HostConfig, Reachability, open_host
from pool import NodeContact, PoolView, complete
from protocols.eth import EthAccount
from protocols.ids import pool_topic
from protocols.inference import VerifiedReceipt, verify_countersigned_receipt
from protocols.keys import Identity
from protocols.testing import authorisation
from validator.closing import close_on_chain
from validator.settlement import facts_of

DEFAULT_PROMPT = "In one sentence, what is a dolphin?"
VALIDATOR_KEYS = DEV_GENESIS_VALIDATOR_INDICES
OPERATOR_KEY = 4
USER_KEY = 5
USER_CREDIT = 10 * 10**6  # 10 lUSD
# Wide enough for full addresses when the output is a log or a CI page rather than a terminal.
console = Console(width=None if sys.stdout.isatty() else 120)


def _step(number: int, title: str) -> None:
    console.rule(f"[bold cyan]{number}. {title}")


def prepare_model(model: str, models_dir: Path) -> Path:
    """The model folder: built or imported once into `models_dir`, verified on every later run."""
    folder = models_dir / model
    try:
        manifest = verify_model_dir(folder)
        console.print(f"Verified {manifest.name} in {folder} ({len(manifest.files)} files)")
        return folder
    except ModelError:
        pass
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with console.status(f"Preparing {model} in {folder} (once; later runs reuse it)..."):
        manifest = build_tiny_model(folder) if model == "tiny" else import_smollm2(folder)
    console.print(f"Prepared {manifest.name} in {folder}")
    return folder


@dataclass
class NetworkOutcome:
    node_peer_id: str
    answer: str
    receipts: list[VerifiedReceipt]


async def serve_and_ask(
    work_dir: Path,
    model_dir: Path,
    operator: ChainClient,
    user: ChainClient,
    chain: ChainLocation,
    prompt: str,
    max_tokens: int,
) -> NetworkOutcome:
    """Relay, node (behind the relay, `serve_node` as `dolphin node` runs it) and client on 127.0.0.1;
    one encrypted question paid by `user`'s credit, one answer, its receipt in the node's ledger."""
    relay_config = HostConfig(work_dir / "relay", relay_service=True, reachability=Reachability.PUBLIC)
    node_dir = work_dir / "node"
    binding = await trio.to_thread.run_sync(register_node, node_dir, operator)
    console.print(f"operator 0x{binding.operator.hex()} registered the node's peer id on chain")
    async with open_host(relay_config) as relay:
        bootstrap = (relay.listen_addrs()[0],)
        console.print(f"relay/bootstrap peer  {relay.peer_id}  {relay.listen_addrs()[0]}")
        config = NodeConfig(
            data_dir=node_dir,
            model=model_dir,
            listen=(),
            bootstrap=bootstrap,
            local_api="127.0.0.1:0",
            heartbeat_interval=1.0,
            rpc_url=chain.rpc_url,
            deployment=chain.deployment,
            chain_dir=chain.data_dir,
            benchmark_prompt_tokens=32,
            benchmark_output_tokens=8,
            benchmark_streams=2,
        )
        async with trio.open_nursery() as nursery:
            with console.status("node: verifying the model, benchmarking, joining the network..."):
                node = await nursery.start(serve_node, config)
            console.print(f"node (no listen addr) {node['peer_id']}  via {node['circuit_addrs'][0]}")
            client_config = HostConfig.light_client(work_dir / "client", bootstrap=bootstrap)
            async with open_host(client_config) as client:
                model_id = bytes.fromhex(node["model"])
                contact = await _find_member(client, model_id, operator.domain("Bonding"))
                console.print(f"client found the pool member {contact.peer_id} (DHT + verified heartbeat)")
                console.print(Panel(prompt, title="prompt (sealed to the node's X25519 key)"))

                def show(text: str) -> None:
                    console.print(text, end="", highlight=False, markup=False)

                session = Identity.generate()
                wallet = EthAccount(bytes(user.account.key))
                credit = authorisation(
                    wallet,
                    session.public_key,
                    domain=user.domain("Credits"),
                    model=model_id,
                    max_credits=USER_CREDIT,
                    expiry=user.chain_time() + 3600,
                )
                completion = await complete(
                    client,
                    contact,
                    [("user", prompt)],
                    identity=session,
                    max_tokens=max_tokens,
                    on_text=show,
                    credit=credit,
                )
                console.print()
                stored = "stored in the node's ledger" if completion.receipt_stored else "NOT stored"
                console.print(
                    f"answer: {completion.tokens_out} tokens, finish '{completion.finish_reason}'; "
                    f"receipt signed by the node, countersigned by the client, {stored}"
                )
            nursery.cancel_scope.cancel()
    evidence = await read_ledger(node_dir, lambda ledger: ledger.countersigned())
    receipts = [verify_countersigned_receipt(data) for data in evidence]
    return NetworkOutcome(node["peer_id"], completion.text, receipts)


async def _find_member(client, model_id: bytes, bonding_domain) -> NodeContact:
    view = PoolView(model_id, bonding_domain)
    await client.gossip.subscribe(pool_topic(model_id), view.validate)
    with trio.fail_after(60):
        while True:
            for record in await client.dht.get_records(model_id):
                if record.peer_id not in client.connected_peers():
                    await client.connect(record.addrs[0])
            for _ in range(20):
                if members := view.members():
                    return members[0].contact
                await trio.sleep(0.1)


def settle(validators: list[ChainClient], operator: ChainClient, outcome: NetworkOutcome) -> None:
    """Receipts -> the user's debit and base rewards -> engine -> root signed by a validator quorum ->
    claim (validator.closing, what the validators' daemons do each epoch, run here in one process)."""
    w3 = operator.w3
    time_travel(w3, 60)  # close the epoch at a block strictly in the past
    block = w3.eth.block_number - 1
    facts, credits = facts_of(outcome.receipts)
    epoch_ms = 86_400_000
    epoch = facts[0].started_at_ms // epoch_ms
    closed = close_on_chain(operator, epoch, epoch_ms, block, facts, credits)
    settlement, snapshot = closed.settlement, closed.snapshot
    table = Table(title=f"epoch {epoch}")
    table.add_column("account", no_wrap=True)
    for heading in ("paid work (lUSD)", "base reward (POD)", "paid by the engine (POD)", "active bond (POD)"):
        table.add_column(heading, justify="right")
    for account, result in settlement.close.accounts.items():
        table.add_row(
            account,
            format_units(settlement.payments.work.get(account, 0) // 10**6, 6),
            format_units(settlement.base.get(account, 0), 18),
            format_units(result.reward, 18),
            format_units(snapshot.active_bonds.get(account, 0), 18),
        )
    console.print(table)
    console.print(
        f"revenue {format_units(settlement.revenue, 6)} lUSD; base rewards emitted "
        f"{format_units(settlement.emission, 18)} POD (half the revenue's value, docs/rewards.md)"
    )
    deadline = w3.eth.get_block("latest")["timestamp"] + 3600
    for batch in settlement.debits:
        signatures = [
            v.sign_debit_batch(batch.batch_id, batch.users, batch.amounts, deadline) for v in validators
        ]
        total = operator.settle_debits(batch.batch_id, batch.users, batch.amounts, deadline, signatures)
        console.print(
            f"{len(signatures)} validators signed the debits: {format_units(total, 6)} lUSD to the buyback"
        )
    console.print(f"Merkle root of cumulative rewards: 0x{settlement.tree.root.hex()}")

    # Nobody has the earnings history to be elected yet: the root carries the genesis set forward.
    next_set = operator.validator_set()
    signatures = [
        validator.sign_epoch_root(epoch, settlement.tree, deadline, next_set) for validator in validators
    ]
    activates_at = operator.propose_root(epoch, settlement.tree, deadline, signatures, next_set)
    console.print(
        f"{len(signatures)} validators signed; root proposed, activates at {activates_at} (timelock)"
    )
    time_travel(w3, operator.deployment.params["root_delay"] + 1)
    installed = operator.activate_root(epoch)
    console.print(f"root active; the next set ({len(installed.members)} validators) installed")
    before = operator.call("POD", "balanceOf", operator.address)
    claim = operator.claim(settlement.tree)
    after = operator.call("POD", "balanceOf", operator.address)
    console.print(
        f"operator claimed {format_units(claim.amount, 18)} POD "
        f"(balance {format_units(before, 18)} -> {format_units(after, 18)} POD)"
    )


def run_demo(models_dir: Path, run_dir: Path, model: str, prompt: str, max_tokens: int) -> None:
    """The five steps; peers and the chain live in `run_dir`, model folders in `models_dir`."""
    if not logging.getLogger().isEnabledFor(logging.INFO):
        # py-libp2p warns about every failed dial attempt and odd DHT key; at the default verbosity the
        # demo's own lines tell the story (`dolphin -v demo` shows everything).
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    console.print(
        Panel(
            "A local Dolphin network on this machine: an Anvil chain with the contracts, libp2p hosts on "
            "127.0.0.1 and a real model. Nothing leaves the machine; nothing is mocked.",
            title="dolphin demo",
        )
    )
    with ExitStack() as stack:
        _step(1, "Chain: Anvil on a free port, every contract deployed")
        dev = stack.enter_context(open_devchain())
        w3 = connect(dev.rpc_url)
        demo_accounts = [
            EthAccount(bytes.fromhex(k.removeprefix("0x"))).address for k in dev.private_keys[1:]
        ]
        columns = (
            TextColumn("{task.description:<48}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("deploying", total=None)

            def on_step(index: int, total: int, description: str) -> None:
                progress.update(task, description=description, completed=index, total=total)

            deployment = deploy_system(
                w3,
                dev.private_keys[0],
                genesis_validators=dev_genesis_validators(),
                path=deployment_path(run_dir / "chain", dev.chain_id),
                demo_accounts=["0x" + a.hex() for a in demo_accounts],
                on_step=on_step,
            )
            progress.update(task, description="deployed", completed=progress.tasks[0].total)
        console.print(f"chain {deployment.chain_id} at {dev.rpc_url}; {len(deployment.addresses)} contracts")

        _step(2, "Stake: the three genesis validators bond 150,000 POD each, the operator 20,000 POD")
        validators = [ChainClient(dev.rpc_url, deployment, dev.private_keys[v]) for v in VALIDATOR_KEYS]
        make_validators(validators)
        operator = ChainClient(dev.rpc_url, deployment, dev.private_keys[OPERATOR_KEY])
        operator.stake(20_000 * POD)
        operator.bond()
        console.print(f"validators {', '.join(v.address for v in validators)} joined")
        console.print(f"operator {operator.address} bonded")
        user = ChainClient(dev.rpc_url, deployment, dev.private_keys[USER_KEY])
        user.credits_deposit(USER_CREDIT)
        console.print(f"API user {user.address} deposited {format_units(USER_CREDIT, 6)} lUSD of credit")

        _step(3, f"Model: {model}")
        folder = prepare_model(model, models_dir)
        console.print(f"model id {load_manifest(folder).model_id().hex()}")

        _step(4, "Network: relay, a node reachable only through it, a light client; one encrypted prompt")
        chain = ChainLocation(
            dev.rpc_url, run_dir / "chain", deployment_path(run_dir / "chain", dev.chain_id)
        )
        outcome = trio.run(
            serve_and_ask, run_dir / "peers", folder, operator, user, chain, prompt, max_tokens
        )

        _step(5, "Settlement: receipts -> debits and rewards -> validator-signed root -> claim")
        settle(validators, operator, outcome)
    console.rule("[bold green]done")


@click.command("demo")
@click.option(
    "--model",
    type=click.Choice(["smollm2", "tiny"]),
    default="smollm2",
    show_default=True,
    help="smollm2: SmolLM2-135M-Instruct (real answers); tiny: the random test Llama (fast).",
)
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=True, help="What the client asks.")
@click.option("--max-tokens", type=click.IntRange(1, 1024), default=64, show_default=True)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".devdata/demo"),
    show_default=True,
    envvar="DOLPHIN_DEMO_DIR",
    help="Model folders are kept here between runs; peers and the chain are fresh each run.",
)
def command(model: str, prompt: str, max_tokens: int, work_dir: Path) -> None:
    """Run a whole local network: deploy, stake, serve an encrypted prompt, settle the epoch."""
    (work_dir / "models").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="run-") as run_dir:
        run_demo(work_dir / "models", Path(run_dir), model, prompt, max_tokens)
