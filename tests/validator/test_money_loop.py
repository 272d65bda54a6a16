"""The money loop between separate processes on Anvil: two `dolphin node` processes serve paid requests,
three `dolphin validator` processes take their receipts, sync, settle two epochs, get roots and debits on
chain and buy POD back.

The tests of this module run in order on one network (the second epoch follows the first):

- epoch 1: both nodes' receipts reach every validator; each validator settles independently and they sign
  the same root; the root equals one recomputed here from the nodes' own ledgers; each operator claims
  exactly what the engine paid; each client's credit falls by exactly price x tokens;
- epoch 2: one validator is stopped (2 of 3 is still a quorum) and another misses receipts at first (a
  third node hands them to one validator only), so the two must sync to sign the same root; forged,
  replayed, double-submitted, unpaid and over-counted receipts never pay; the keeper buys back the
  revenue and stkPOD's share price rises.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from chain.client import ChainClient, bond_validators
from chain.devchain import dev_genesis_validators, keep_mining, time_travel
from chain.merkle import RewardsTree
from chain.rewards import POD
from chain.testing import open_deployed_chain
from chain.transactions import connect
from cli.main import main
from node.ledger import read_ledger
from node.processes import node_process
from node.registration import register_node
from node.testing import find_member, watch_pool
from p2p import DhtMode, HostConfig, open_host
from p2p.identity import load_or_create_identity, peer_id_of
from p2p.processes import relay_process, stop_all
from p2p.testing import PeerProcess
from pool import complete
from protocols import testing as pt
from protocols.eth import EthAccount, keccak256
from protocols.ids import RECEIPT_PROTOCOL
from protocols.inference import verify_countersigned_receipt
from protocols.keys import Identity, peer_id_from_public_key
from protocols.messages import ReceiptBatch, ReceiptBatchAck
from protocols.schema import decode_message, encode_message
from protocols.testing import authorisation, countersigned_receipt
from runtime.http import free_local_port
from validator.closing import close_on_chain, find_closing_block
from validator.config import DEV_SETTLEMENT
from validator.evidence import SettlementRecord
from validator.processes import validator_process
from validator.settlement import facts_of

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chain, pytest.mark.process]

EPOCH_S = 15
EPOCH_MS = EPOCH_S * 1000
USD = 10**6
PRICE = USD // 2  # the deployment's default price per million tokens
THIRD_NODE = 50  # pt.identity(50): a node run inside the test, registered by dev account 6


class Network:
    """Everything the two epochs share."""

    def __init__(self, tmp: Path, deployed, clients, relay, nodes, validators, model_id) -> None:
        self.tmp = tmp
        self.deployed = deployed
        self.clients = clients
        self.relay = relay
        self.nodes = nodes
        self.validators = validators
        self.model_id = model_id
        self.epochs: dict[int, SettlementRecord] = {}

    @property
    def reader(self) -> ChainClient:
        return self.clients[0]

    @property
    def operators(self) -> list[ChainClient]:
        return self.clients[4:7]

    @property
    def users(self) -> list[ChainClient]:
        return self.clients[7:9]


def _start(peer: PeerProcess, timeout: float = 180.0) -> PeerProcess:
    try:
        trio.run(peer.wait_ready, timeout)
    except BaseException:
        print(peer.log_tail(20_000))
        peer.stop()
        raise
    return peer


@pytest.fixture(scope="module")
def network(tmp_path_factory, tiny_model_dir):
    from node.models import load_manifest

    tmp = tmp_path_factory.mktemp("money")
    # Validator 1 (dev account 1) is also the buyback keeper.
    with open_deployed_chain(tmp / "chain", keeper=dev_genesis_validators()[0]) as deployed:
        clients = [ChainClient(deployed.rpc_url, deployed.deployment, key) for key in deployed.keys]
        bond_validators(clients[1:4])
        for operator in clients[4:7]:
            operator.stake(20_000 * POD)
            operator.bond()
        clients[6].register_node(keccak256(peer_id_from_public_key(pt.identity(THIRD_NODE).public_key)))
        for user in clients[7:9]:
            user.credits_deposit(50 * USD)
        keys = []
        for index in (1, 2, 3):
            path = tmp / f"validator-{index}.key"
            path.write_text(deployed.keys[index])
            path.chmod(0o600)
            keys.append(path)
        with keep_mining(connect(deployed.rpc_url), 1.0):
            relay = _start(relay_process(tmp / "relay"))
            peers = []
            try:
                chain_args = ["--rpc-url", deployed.rpc_url, "--deployment", str(deployed.path)]
                validators = [
                    validator_process(
                        tmp / f"validator-{index}", tiny_model_dir,
                        "--key-file", str(key), "--bootstrap", relay.addr, *chain_args,
                        settings={**DEV_SETTLEMENT, "epoch_seconds": EPOCH_S, "base_per_hour": 0.01},
                    )
                    for index, key in zip((1, 2, 3), keys, strict=True)
                ]  # fmt: skip
                peers.extend(validators)
                nodes = []
                for index, operator in zip((1, 2), clients[4:6], strict=True):
                    node_dir = tmp / f"node-{index}"
                    register_node(node_dir, operator)
                    node = node_process(
                        node_dir,
                        tiny_model_dir,
                        "--bootstrap", relay.addr, *chain_args,
                        "--epoch-seconds", str(EPOCH_S), "--receipt-submit-seconds", "1",
                        "--paid-only",
                    )  # fmt: skip
                    nodes.append(node)
                    peers.append(node)
                for peer in peers:
                    _start(peer)
                model_id = load_manifest(tiny_model_dir).model_id()
                yield Network(tmp, deployed, clients, relay, nodes, validators, model_id)
            finally:
                stop_all([*peers, relay])


async def _wait_epoch_start() -> int:
    """Sleep into the start of a fresh epoch (so the requests that follow fit in it); returns it."""
    now = time.time()
    if now % EPOCH_S > 2:
        await trio.sleep(EPOCH_S - now % EPOCH_S + 0.2)
    return int(time.time()) // EPOCH_S


async def _ask_both_nodes(net: Network, prompts: list[str]) -> None:
    """One paid request per prompt to each node, alternately paid by the two users."""
    config = HostConfig(
        net.tmp / f"client-{time.time_ns()}", bootstrap=(net.relay.addr,), dht_mode=DhtMode.CLIENT
    )
    async with open_host(config) as client:
        view = await watch_pool(client, net.model_id, binding_domain=net.reader.domain("Bonding"))
        members = [await find_member(client, view, node.peer_id) for node in net.nodes]
        for n, prompt in enumerate(prompts):
            for member in members:
                user = net.users[n % 2]
                session = Identity.generate()
                credit = authorisation(
                    EthAccount(bytes(user.account.key)),
                    session.public_key,
                    domain=user.domain("Credits"),
                    model=net.model_id,
                    max_credits=10 * USD,
                    expiry=int(time.time()) + 3600,
                )
                done = await complete(
                    client, member.contact, [("user", prompt)], identity=session, max_tokens=6, credit=credit
                )
                assert done.receipt_stored


def _evidence_of(net: Network, epoch: int) -> list[bytes]:
    evidence = []
    for node in net.nodes:
        evidence += trio.run(read_ledger, node.data_dir, lambda ledger: ledger.countersigned(epoch))
    return evidence


def _recompute(net: Network, epoch: int, evidence: list[bytes]):
    """The settlement of `epoch` computed here, from the evidence alone, as any validator would."""
    facts, credits = facts_of(verify_countersigned_receipt(data) for data in evidence)
    block = find_closing_block(net.reader, epoch, EPOCH_MS)
    assert block is not None
    previous = max(net.epochs.values(), key=lambda r: r.epoch) if net.epochs else None
    closed = close_on_chain(
        net.reader, epoch, EPOCH_MS, block, facts, credits, previous=previous, recent=net.epochs.values()
    )
    settlement = closed.settlement
    net.epochs[epoch] = SettlementRecord(
        epoch, block, settlement.receipt_count, settlement.receipts_commitment, settlement.tree,
        tuple(settlement.debits), settlement.carry(), closed.snapshot.timepoint + 6 * 86400, {}, "none",
        frozenset(),
    )  # fmt: skip
    return settlement


def _wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def _settle_on_chain(net: Network, epoch: int, settlement) -> None:
    """Wait for the validators to propose the root and settle the debits; pass the delay; wait for the
    activation (all done by the validator processes)."""
    reader = net.reader
    _wait_for(lambda: reader.root_status(epoch)[0] != "none", 120, f"the root of epoch {epoch}")
    [proposed] = reader.events("RewardsDistributor", "RootProposed", {"epoch": epoch})
    assert bytes(proposed["args"]["root"]) == settlement.tree.root  # the validators' root is ours
    for batch in settlement.debits:
        _wait_for(
            lambda b=batch: reader.call("Credits", "isSettled", b.batch_id),
            60,
            f"debit batch {batch.batch_id}",
        )
    time_travel(net.deployed.w3, reader.deployment.params["root_delay"] + 1)
    _wait_for(lambda: reader.root_status(epoch)[0] == "activated", 60, f"activation of epoch {epoch}")


def _claims_equal_the_engine(net: Network, epoch: int, settlement) -> None:
    """Every operator claims exactly what the engine paid: the first through `dolphin chain claim
    --bootstrap`, which fetches the tree from the validators over the network, the others from the tree."""
    for validator in net.validators:
        path = validator.data_dir / "rewards" / f"epoch-{epoch}.json"
        if path.exists():  # what validators publish for claimers is the tree recomputed here
            assert RewardsTree.from_json(path.read_text()).root == settlement.tree.root
    claimers = [(i, op) for i, op in enumerate(net.operators) if op.address in settlement.cumulative]
    for number, (index, operator) in enumerate(claimers):
        before = operator.call("RewardsDistributor", "claimedOf", operator.address)
        if number == 0:
            key = net.tmp / f"operator-{index}.key"
            key.write_text(net.deployed.keys[4 + index])
            key.chmod(0o600)
            result = CliRunner().invoke(
                main,
                ["chain", "claim", "--bootstrap", net.relay.addr, "--rpc-url", net.deployed.rpc_url,
                 "--deployment", str(net.deployed.path), "--key-file", str(key)],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            assert f"Fetched the rewards tree of epoch {epoch}" in result.output
        else:
            operator.claim(settlement.tree)
        after = operator.call("RewardsDistributor", "claimedOf", operator.address)
        assert after == settlement.cumulative[operator.address] > before


@pytest.fixture(scope="module")
def first_epoch(network):
    """Epoch one: three prompts to each node, settled by the validators on their own; its evidence, its
    settlement recomputed here and the users' credit before it. Later phases build on it, so each test
    asks for the phases it needs and the module passes in any order."""
    net = network
    epoch = trio.run(_wait_epoch_start)
    credit_before = [u.call("Credits", "creditOf", u.address) for u in net.users]
    trio.run(_ask_both_nodes, net, ["What is a dolphin?", "Name a sea.", "Count to three."])
    assert int(time.time()) // EPOCH_S == epoch, "the requests took longer than an epoch"
    evidence = _wait_for(
        lambda: len(_evidence_of(net, epoch)) == 6 and _evidence_of(net, epoch), 30, "ledgers"
    )
    # Wait until the validators settled and proposed, then recompute from the nodes' own ledgers.
    _wait_for(lambda: net.reader.root_status(epoch)[0] != "none", 150, "the root of epoch 1")
    settlement = _recompute(net, epoch, evidence)
    _settle_on_chain(net, epoch, settlement)
    _claims_equal_the_engine(net, epoch, settlement)  # claims are cumulative: before epoch two's
    paid = [
        before - u.call("Credits", "creditOf", u.address)
        for u, before in zip(net.users, credit_before, strict=True)
    ]
    return evidence, settlement, paid


def test_epoch_one_settles_by_itself_and_pays_exactly(network, first_epoch):
    net = network
    evidence, settlement, paid = first_epoch
    assert settlement.receipt_count == 6 and settlement.payments.paid == 6
    # Each client paid exactly price x tokens for its receipts.
    tokens = {u.address.lower(): 0 for u in net.users}
    for data in evidence:
        receipt = verify_countersigned_receipt(data).receipt
        tokens["0x" + receipt.client.hex()] += receipt.tokens_in + receipt.tokens_out
    for user, user_paid in zip(net.users, paid, strict=True):
        assert user_paid == PRICE * tokens[user.address.lower()] // 10**6 > 0


async def _submit_to(net: Network, validator: PeerProcess, receipts: list[bytes]) -> list[str]:
    config = HostConfig(
        net.tmp / f"third-node-{time.time_ns()}", bootstrap=(net.relay.addr,), dht_mode=DhtMode.CLIENT
    )
    async with open_host(config) as host:
        await host.connect(validator.addr)
        stream = await host.open_stream(validator.peer_id, RECEIPT_PROTOCOL)
        await stream.write_message(encode_message(ReceiptBatch(receipts=tuple(receipts))))
        ack = decode_message(await stream.read_message(1 << 20), ReceiptBatchAck)
        await stream.close()
    return [v.status for v in ack.verdicts]


@pytest.fixture(scope="module")
def second_epoch(network, first_epoch):  # epoch one (its evidence, its claims) comes first
    """Epoch two, with a validator down and a third node's receipts handed to one validator only."""
    net = network
    first = max(net.epochs)  # the first epoch's, recorded by _recompute
    net.validators[2].stop()  # 2 of 3 equal weights is still a quorum
    epoch = trio.run(_wait_epoch_start)
    trio.run(_ask_both_nodes, net, ["Why is the sea salty?"])
    # A third node hands its receipts to validator 1 only: validator 2 must fetch them to agree.
    user = net.users[0]
    wallet = EthAccount(bytes(user.account.key))
    now = time.time_ns() // 1_000_000
    own = [
        countersigned_receipt(
            node_n=THIRD_NODE, client_n=60 + n, wallet=wallet, started_at_ms=now + n, prompt=f"third {n}",
            tokens_in=40, tokens_out=4, model=net.model_id, domain=user.domain("Credits"),
        )
        for n in range(3)
    ]  # fmt: skip
    old = _evidence_of(net, first)[0]
    forged = bytearray(own[0])
    forged[-7] ^= 1
    unpaid = countersigned_receipt(node_n=THIRD_NODE, client_n=70, started_at_ms=now, prompt="free")
    statuses = trio.run(_submit_to, net, net.validators[0], [*own, bytes(forged), old, unpaid])
    again = trio.run(_submit_to, net, net.validators[0], own[:1])  # submitted twice
    evidence = _wait_for(
        lambda: len(_evidence_of(net, epoch)) == 2 and _evidence_of(net, epoch), 30, "ledgers"
    )
    _wait_for(lambda: net.reader.root_status(epoch)[0] != "none", 150, "the root of epoch 2")
    settlement = _recompute(net, epoch, evidence + own)
    _settle_on_chain(net, epoch, settlement)  # proposed at all: validators 1 and 2 signed this same root
    _claims_equal_the_engine(net, epoch, settlement)
    return epoch, settlement, statuses, again


def test_epoch_two_settles_with_a_validator_down_and_one_missing_receipts(network, second_epoch):
    net = network
    _, settlement, statuses, again = second_epoch
    assert statuses == ["stored", "stored", "stored", "refused", "refused", "refused"]
    assert again == ["duplicate"]
    assert settlement.receipt_count == 5 and settlement.payments.paid == 5
    log = (net.validators[1].data_dir / "peer.log").read_text()
    assert "fetched 3 receipts of epoch" in log


def test_the_keeper_buys_back_the_revenue_for_stakers(network, second_epoch):
    # After both epochs: the clock moves a week here, which the epochs' settlement must not see.
    net = network
    status = net.reader.money_status()
    assert status.revenue > 0
    price = status.share_price
    time_travel(net.deployed.w3, 1800)  # a TWAP window after the keeper's fresh observation
    _wait_for(lambda: net.reader.money_status().pod_bought_back > 0, 60, "a buyback")
    assert net.reader.money_status().awaiting_buyback == 0
    time_travel(net.deployed.w3, 7 * 86400)
    assert net.reader.money_status().share_price > price


def test_a_restored_and_a_fresh_validator_rebuild_the_roots_the_incumbents_signed(
    network, second_epoch, tiny_model_dir
):  # both epochs settled first, and validator 3 down through the second
    """Validator 3 comes back on its own data, a backup of epoch 1 (it was down through epoch 2), and a
    validator that never ran starts on an empty data dir. Both settle the epochs they lack from the receipts
    their peers hold and the chain, and check each against the root on chain: they arrive at the roots
    the incumbents signed (a fresh validator used to settle from nothing and compute another root).

    The fresh one joins through a relay that does not answer until the validator has given up waiting
    for peers: it used to close the past epochs as empty then, and never settled them."""
    net = network
    chain_roots = {
        epoch: bytes(
            net.reader.events("RewardsDistributor", "RootProposed", {"epoch": epoch})[0]["args"]["root"]
        )
        for epoch in net.epochs
    }
    restored_dir = net.validators[2].data_dir
    assert not (restored_dir / "rewards" / f"epoch-{max(net.epochs)}.json").exists()  # it missed epoch 2
    fresh_key = net.tmp / "fresh-validator.key"
    fresh_key.write_text(net.deployed.keys[9])
    fresh_key.chmod(0o600)
    chain_args = ["--rpc-url", net.deployed.rpc_url, "--deployment", str(net.deployed.path)]
    settings = {**DEV_SETTLEMENT, "epoch_seconds": EPOCH_S, "base_per_hour": 0.01}
    # The fresh validator's bootstrap peer: a relay that starts once the validator gave up waiting.
    late_dir, late_port = net.tmp / "late-relay", free_local_port()
    late_listen = f"/ip4/127.0.0.1/tcp/{late_port}"
    late_addr = f"{late_listen}/p2p/{peer_id_of(load_or_create_identity(late_dir))}"
    started = []
    try:
        for data_dir, key, bootstrap in (
            (restored_dir, net.tmp / "validator-3.key", net.relay.addr),
            (net.tmp / "validator-fresh", fresh_key, late_addr),
        ):
            process = validator_process(
                data_dir, tiny_model_dir, "--key-file", str(key), "--bootstrap", bootstrap, *chain_args,
                settings=settings,
            )  # fmt: skip
            started.append(process)
            _start(process)
        fresh = started[-1]
        _wait_for(
            lambda: "found no other validator" in fresh.log_tail(50_000), 60, "the wait for peers to end"
        )
        started.append(_start(relay_process(late_dir, (late_listen,), bootstrap=(net.relay.addr,))))
        for process in started[:2]:
            for epoch, root in chain_roots.items():
                path = process.data_dir / "rewards" / f"epoch-{epoch}.json"
                try:
                    _wait_for(path.exists, 120, f"{process.data_dir.name} settling epoch {epoch}")
                except AssertionError:
                    print(process.log_tail(20_000))
                    raise
                assert RewardsTree.from_json(path.read_text()).root == root
    finally:
        stop_all(started)
