"""Junk receipts are refused at admission: a node's submission over libp2p to a validator whose gate reads a
real chain (Anvil) is stored only for registered nodes and funded wallets, within the per-epoch quotas."""

import time

import pytest
import trio
import trio_asyncio

from chain.client import ChainClient
from p2p.testing import open_host_group
from protocols import testing as pt
from protocols.eth import EthAccount, keccak256
from protocols.ids import RECEIPT_PROTOCOL
from protocols.keys import peer_id_from_public_key
from protocols.messages import ReceiptBatch, ReceiptBatchAck
from protocols.schema import decode_message, encode_message
from validator.admission import AdmissionLimits, chain_gate
from validator.evidence import open_evidence_store
from validator.receipts import ReceiptService, ReceiptWindow

pytestmark = [pytest.mark.integration, pytest.mark.process, pytest.mark.chain]

EPOCH_MS = 3_600_000
WINDOW = ReceiptWindow(EPOCH_MS, 60_000)
USD = 10**6


@pytest.fixture(scope="module")
def chain(module_deployed_chain):
    """Node pt.identity(2) registered to an operator; a funded wallet (key 5) and one without credit (6)."""
    deployed = module_deployed_chain
    clients = [ChainClient(deployed.rpc_url, deployed.deployment, key) for key in deployed.keys]
    clients[4].register_node(keccak256(peer_id_from_public_key(pt.identity(2).public_key)))
    clients[5].credits_deposit(10 * USD)
    yield deployed, clients


def _wallet(client: ChainClient) -> EthAccount:
    return EthAccount(bytes(client.account.key))


def _receipt(client: ChainClient, n: int, *, node_n: int = 2) -> bytes:
    return pt.countersigned_receipt(
        wallet=_wallet(client),
        node_n=node_n,
        client_n=100 + n,
        started_at_ms=time.time_ns() // 1_000_000 - 1000,
        prompt=f"question {n}",
        domain=client.domain("Credits"),
    )


async def _submit(node_host, validator_host, receipts: list[bytes]) -> list[str]:
    stream = await node_host.open_stream(validator_host.peer_id, RECEIPT_PROTOCOL)
    try:
        await stream.write_message(encode_message(ReceiptBatch(receipts=tuple(receipts))))
        ack = decode_message(await stream.read_message(1 << 20, timeout=30), ReceiptBatchAck)
    finally:
        await stream.close()
    return [v.status if v.status != "refused" else v.reason for v in ack.verdicts]


@pytest.mark.trio
async def test_junk_receipts_are_refused_at_admission_and_quotas_bound_the_rest(tmp_path, chain):
    deployed, clients = chain
    funded, broke = clients[5], clients[6]
    reader = ChainClient(deployed.rpc_url, deployed.deployment)
    gate = chain_gate(reader, AdmissionLimits(receipts_per_peer=7, receipts_per_wallet=3, recheck_seconds=0))
    async with (
        trio_asyncio.open_loop(),
        open_host_group(tmp_path, 2) as (node_host, validator_host),
        open_evidence_store(tmp_path / "validator", epoch_ms=EPOCH_MS) as store,
    ):
        service = ReceiptService(store, WINDOW, funded.domain("Credits"), gate=gate)
        service.install(validator_host)
        await node_host.connect(validator_host.listen_addrs()[0])
        verdicts = await _submit(
            node_host,
            validator_host,
            [_receipt(funded, 1), _receipt(broke, 2), _receipt(funded, 3, node_n=3), _receipt(funded, 4)],
        )
        assert verdicts == [
            "stored",
            "the paying wallet holds no credit: its receipts earn nothing",
            "the node is not registered on chain: its receipts earn nothing",
            "stored",
        ]
        reads = gate.reads
        # The wallet's quota (3 an epoch): one more is stored, the next refused; no new chain read.
        verdicts = await _submit(node_host, validator_host, [_receipt(funded, 5), _receipt(funded, 6)])
        assert verdicts == ["stored", "over the wallet's quota of 3 receipts an epoch"]
        assert gate.reads == reads  # the funded wallet and the registered node are cached for the epoch
        # The peer's quota (7 offered an epoch, refused ones included): nothing more from this peer.
        await trio.to_thread.run_sync(broke.credits_deposit, USD)  # funded now: read again (recheck 0 s)
        verdicts = await _submit(node_host, validator_host, [_receipt(broke, 7), _receipt(broke, 8)])
        assert verdicts == ["stored", "over this peer's quota of 7 receipts an epoch"]
        assert service.statistics().stored == 4
