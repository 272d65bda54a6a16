"""Receipts from nodes to validators and between validators, over hosts joined in memory (`p2p.memory`: the
real streams, their framing limits and deadlines, without sockets)."""

import contextlib
import dataclasses
import hashlib
import time

import pytest
import trio
import trio_asyncio

from node.ledger import open_ledger
from node.submission import ReceiptSubmitter
from p2p import MessageTooLarge, P2PError, StreamError, StreamTimeout
from p2p.gossip import GossipMessage, Verdict
from p2p.memory import open_memory_network
from p2p.testing import wait_until
from pool.validator_peers import ValidatorDirectory, ValidatorPeer, sign_announcement
from protocols import envelope
from protocols import testing as pt
from protocols.eth import TypedDomain
from protocols.ids import RECEIPT_PROTOCOL, RECEIPT_SYNC_PROTOCOL, VALIDATORS_TOPIC
from protocols.inference import countersign_receipt, verify_countersigned_receipt
from protocols.keys import Identity, peer_id_from_text
from protocols.messages import MAX_RECEIPT_BATCH, MAX_SYNC_DIGESTS, ReceiptBatch, ReceiptBatchAck
from protocols.schema import decode_message, encode_message
from protocols.testing import authorisation, countersigned_receipt
from validator.evidence import open_evidence_store
from validator.receipts import (
    ReceiptRefused,
    ReceiptService,
    ReceiptWindow,
    SyncGaveUp,
    SyncProgress,
    admit_receipt,
    fetch_missing,
)

EPOCH_MS = 3_600_000
WINDOW = ReceiptWindow(EPOCH_MS, 60_000)
WALLET = pt.eth_account(5)
OTHER_DOMAIN = TypedDomain("Dolphin Network", "1", 1, b"\1" * 20)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _receipt(n: int, *, at: int | None = None, **kwargs) -> bytes:
    return countersigned_receipt(
        wallet=WALLET, started_at_ms=at or _now_ms() - 1000, prompt=f"question {n}", **kwargs
    )


def _admit(data: bytes, now_ms: int | None = None, **kwargs):
    return admit_receipt(
        data, window=WINDOW, credits_domain=pt.TEST_DOMAIN, now_ms=now_ms or _now_ms(), **kwargs
    )


@pytest.mark.unit
def test_admission_takes_paid_verified_receipts_of_open_epochs_only():
    now = _now_ms()
    assert _admit(_receipt(1, at=now)).receipt.client == WALLET.address
    refusals = {
        "unpaid": countersigned_receipt(started_at_ms=now),
        "invalid receipt": _receipt(2, at=now)[:-3] + b"\0\0\0",
        "not signed by its wallet": countersigned_receipt(  # signed for another chain's Credits
            credit=authorisation(WALLET, pt.identity(1).public_key, domain=OTHER_DOMAIN),
            started_at_ms=now,
            node_checks_credit=False,
        ),
        "in the future": _receipt(3, at=now + 120_000),
        "is closed": _receipt(4, at=now - 2 * EPOCH_MS),
    }
    for reason, data in refusals.items():
        with pytest.raises(ReceiptRefused, match=reason):
            _admit(data, now)
    # A sync asks about one epoch: another epoch's receipt is refused, a closed one taken.
    old = _receipt(5, at=now - 2 * EPOCH_MS)
    assert _admit(old, now, epoch=WINDOW.epoch_of(now - 2 * EPOCH_MS))
    with pytest.raises(ReceiptRefused, match="not"):
        _admit(old, now, epoch=WINDOW.epoch_of(now))


@contextlib.asynccontextmanager
async def _network(tmp_path):
    """A node host with a ledger and two validator hosts with evidence stores, joined in memory; the node's
    directory has taken both validators' announcements, as VALIDATORS_TOPIC's validator."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(trio_asyncio.open_loop())
        network = await stack.enter_async_context(open_memory_network())
        node_host, *validator_hosts = (network.host() for _ in range(3))
        ledger = await stack.enter_async_context(open_ledger(tmp_path / "ledger", epoch_ms=EPOCH_MS))
        services = []
        for index, host in enumerate(validator_hosts):
            store = await stack.enter_async_context(
                open_evidence_store(tmp_path / f"validator-{index}", epoch_ms=EPOCH_MS)
            )
            service = ReceiptService(store, WINDOW, pt.TEST_DOMAIN)
            service.install(host)
            services.append(service)
        directory = ValidatorDirectory(pt.TEST_DOMAIN)
        for host, wallet in zip(validator_hosts, (pt.eth_account(20), pt.eth_account(21)), strict=True):
            data = sign_announcement(
                Identity(host.signing_seed()),
                peer_id_from_text(host.peer_id),
                wallet,
                pt.TEST_DOMAIN,
                host.listen_addrs(),
                expiry=int(time.time()) + 600,
            )
            announced = GossipMessage(VALIDATORS_TOPIC, data, host.peer_id, host.peer_id, b"")
            assert directory.validate(announced) is Verdict.ACCEPT
        yield node_host, ledger, directory, validator_hosts, services


async def _store(ledger, receipts):
    for data in receipts:
        await ledger.store_receipt(verify_countersigned_receipt(data))


@pytest.mark.unit
@pytest.mark.trio
async def test_a_node_hands_each_validator_its_paid_receipts_once(tmp_path):
    async with _network(tmp_path) as (node_host, ledger, directory, validator_hosts, services):
        paid = [_receipt(n) for n in range(5)]
        unpaid = countersigned_receipt(started_at_ms=_now_ms() - 1000, prompt="free")
        await _store(ledger, [*paid, unpaid])
        submitter = ReceiptSubmitter(
            node_host, ledger, directory, interval=3600, epoch_ms=EPOCH_MS, batch_size=2
        )
        assert await submitter.submit_all() == 2 * len(paid)  # three batches each; the unpaid one stays
        for service in services:
            assert await service.store.commitment(WINDOW.epoch_of(_now_ms() - 1000)) == (
                len(paid),
                (await services[0].store.commitment(WINDOW.epoch_of(_now_ms() - 1000)))[1],
            )
        assert await submitter.submit_all() == 0  # every verdict was final
        totals = await ledger.submission_totals()
        assert {peer.peer_id: totals[peer.peer_id] for peer in directory.peers()} == {
            host.peer_id: {"stored": len(paid)} for host in validator_hosts
        }
        assert submitter.statistics().failures == 0


@pytest.mark.unit
@pytest.mark.trio
async def test_a_validator_that_missed_receipts_fetches_them_from_another(tmp_path):
    async with _network(tmp_path) as (_, _, _, validator_hosts, (first, second)):
        at = _now_ms() - 1000
        epoch = WINDOW.epoch_of(at)
        receipts = [verify_countersigned_receipt(_receipt(n, at=at + n)) for n in range(300)]
        await first.store.add_receipts(receipts)
        await second.store.add_receipts([*receipts[:10], verify_countersigned_receipt(_receipt(999, at=at))])
        peers = [ValidatorPeer(b"", h.peer_id, tuple(h.listen_addrs()), 0, 0) for h in validator_hosts]
        assert await fetch_missing(validator_hosts[1], peers[0], second, epoch) == 290
        assert await fetch_missing(validator_hosts[0], peers[1], first, epoch) == 1
        assert await first.store.commitment(epoch) == await second.store.commitment(epoch)
        assert (await first.store.commitment(epoch))[0] == 301


@contextlib.asynccontextmanager
async def _serving_and_fetching(tmp_path, held):
    """Two validators joined in memory: the first holds `held` (stored as a peer may, checked or not) and
    serves syncs through `serve` (a list: the test swaps the handler); yields (fetching host, the first's
    peer, the fetching service, serve)."""
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(trio_asyncio.open_loop())
        network = await stack.enter_async_context(open_memory_network())
        serving_host, fetching_host = network.host(), network.host()
        services = []
        for index in range(2):
            store = await stack.enter_async_context(
                open_evidence_store(tmp_path / f"validator-{index}", epoch_ms=EPOCH_MS)
            )
            services.append(ReceiptService(store, WINDOW, pt.TEST_DOMAIN))
        serving, fetching = services
        await serving.store.add_receipts(held)
        serve = [serving.handle_sync]

        async def handle(stream):
            await serve[0](stream)

        serving_host.set_stream_handler(RECEIPT_SYNC_PROTOCOL, handle)
        peer = ValidatorPeer(b"", serving_host.peer_id, tuple(serving_host.listen_addrs()), 0, 0)
        yield fetching_host, peer, fetching, serve


@pytest.mark.unit
@pytest.mark.trio
async def test_a_sync_goes_on_past_the_stall_interval_while_the_peer_keeps_answering(tmp_path):
    """A full epoch (1M receipts) takes minutes from one peer, and a total deadline of
    sync_timeout_seconds cut it to a third: a fetch is bounded by progress instead."""
    at = _now_ms() - 1000
    epoch = WINDOW.epoch_of(at)
    held = [verify_countersigned_receipt(_receipt(n, at=at + n)) for n in range(300)]
    async with _serving_and_fetching(tmp_path, held) as (host, peer, fetching, serve):
        answered = serve[0]

        async def slowly(stream):  # each answer comes well within the stall interval
            await trio.sleep(0.6)
            await answered(stream)

        serve[0] = slowly
        started = time.monotonic()
        # A listing page and two batches of 256: three answers, 1.8 s in all against a stall of 1 s.
        assert await fetch_missing(host, peer, fetching, epoch, stall_seconds=1.0) == 300
        assert time.monotonic() - started > 1.8
        assert (await fetching.store.commitment(epoch))[0] == 300


def _answers(count: int, at: int) -> list:
    """`count` receipts of distinct answers in one paid session, made quickly: one honest receipt's fields
    signed again by its node and client for other requests."""
    honest = verify_countersigned_receipt(_receipt(0, at=at)).receipt
    return [
        verify_countersigned_receipt(
            countersign_receipt(
                envelope.sign(
                    dataclasses.replace(honest, request_hash=hashlib.sha256(b"%d" % n).digest()),
                    pt.identity(2),
                    now_ms=at,
                ),
                pt.identity(1),
            )
        )
        for n in range(count)
    ]


@pytest.mark.unit
@pytest.mark.trio
async def test_a_stalled_peer_is_given_up_within_the_stall_interval_and_the_next_fetch_resumes(tmp_path):
    at = _now_ms() - 1000
    epoch = WINDOW.epoch_of(at)
    held = _answers(MAX_SYNC_DIGESTS + 100, at)  # two pages of the peer's listing
    # A peer's store may hold what it never checked: an authorisation its wallet did not sign.
    forged = dataclasses.replace(
        authorisation(pt.eth_account(9), pt.identity(1).public_key), client=WALLET.address
    )
    held.append(
        verify_countersigned_receipt(
            countersigned_receipt(credit=forged, started_at_ms=at, node_checks_credit=False)
        )
    )
    first_page_exchanges = 1 + MAX_SYNC_DIGESTS // MAX_RECEIPT_BATCH  # its listing and its batches
    async with _serving_and_fetching(tmp_path, held) as (host, peer, fetching, serve):
        answered = serve[0]
        asked: list[int] = []
        stalled_at: list[float] = []
        resume = trio.Event()

        async def stalling(stream):  # the first page, then nothing until resumed
            asked.append(len(asked))
            if len(asked) > first_page_exchanges and not resume.is_set():
                stalled_at.append(time.monotonic())
                await resume.wait()
            await answered(stream)

        serve[0] = stalling
        progress = SyncProgress()
        with pytest.raises(SyncGaveUp, match="sent nothing for 2.0 s"):
            await fetch_missing(host, peer, fetching, epoch, stall_seconds=2.0, progress=progress)
        assert 1.5 < time.monotonic() - stalled_at[0] < 3.5
        first = progress.stored
        assert first >= MAX_SYNC_DIGESTS - 1 and not progress.complete  # the page may hold the forged one
        resume.set()

        requests = []

        async def recording(stream):
            requests.append(stream)
            await answered(stream)

        serve[0] = recording
        added = await fetch_missing(host, peer, fetching, epoch, stall_seconds=2.0, progress=progress)
        assert added == MAX_SYNC_DIGESTS + 100 - first
        assert len(requests) == 2  # the listing after the first page, and one batch: no starting over
        assert progress.complete and progress.stored == MAX_SYNC_DIGESTS + 100
        # The forged one was offered and refused, as admission refuses it; the others are marked verified.
        assert (await fetching.store.commitment(epoch))[0] == MAX_SYNC_DIGESTS + 100
        _, credits = await fetching.store.facts(epoch)
        assert forged not in credits.values()
        assert await fetching.store.verified_credits(epoch, pt.TEST_DOMAIN) == set(credits)


@pytest.mark.unit
@pytest.mark.trio
async def test_hostile_submissions_leave_the_validator_serving(tmp_path):
    async with _network(tmp_path) as (node_host, _ledger, _directory, validator_hosts, (service, _)):
        validator = validator_hosts[0]

        async def send(payload: bytes) -> bytes | None:
            stream = await node_host.open_stream(validator.peer_id, RECEIPT_PROTOCOL)
            try:
                await stream.write_message(payload)
                return await stream.read_message(1 << 20, timeout=5)
            except P2PError:
                return None
            finally:
                await stream.close()

        assert await send(b"\x93garbage") is None  # malformed: the stream is reset
        # The validator refuses the length at once and resets the stream: an error here, never a timeout.
        stream = await node_host.open_stream(validator.peer_id, RECEIPT_PROTOCOL)
        await stream.write(b"\xff\xff\xff\x7f")  # announces a 268 MB message
        with pytest.raises(StreamError) as refused:
            await stream.read_message(1024, timeout=5)
        assert not isinstance(refused.value, StreamTimeout | MessageTooLarge), refused.value
        junk = ReceiptBatch(receipts=(b"not a receipt", _receipt(1)))
        ack = decode_message(await send(encode_message(junk)), ReceiptBatchAck)
        assert [v.status for v in ack.verdicts] == ["refused", "stored"]
        await wait_until(lambda: service.statistics().bad_streams >= 1, timeout=5)
        assert service.statistics().stored == 1
