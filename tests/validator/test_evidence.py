"""The evidence store: a permanent spent set, one receipt per answer, settled epochs closed for good."""

import pytest
import trio_asyncio

from chain.rewards import RewardParams
from chain.snapshot import ChainSnapshot
from protocols import envelope
from protocols import testing as pt
from protocols.inference import countersign_receipt, verify_countersigned_receipt
from protocols.testing import countersigned_receipt
from validator import settle_epoch
from validator.evidence import open_evidence_store
from validator.settlement import EpochMarket

pytestmark = pytest.mark.integration

EPOCH_MS = 10_000
EPOCH = 170_000_000
START = EPOCH * EPOCH_MS
WALLET = pt.eth_account(5)


def _receipt(at=START + 1, prompt="hi", **kwargs):
    return verify_countersigned_receipt(
        countersigned_receipt(wallet=WALLET, started_at_ms=at, prompt=prompt, **kwargs)
    )


def _market():
    return EpochMarket({pt.TEST_MODEL: 10**6}, {WALLET.address: 10**6}, {}, 1, pt.TEST_DOMAIN)


def _snapshot():
    return ChainSnapshot(1, 1, RewardParams(), {}, frozenset(), frozenset())


@pytest.mark.trio
async def test_an_answer_is_stored_once_ever_and_the_smallest_digest_wins(tmp_path):
    first = _receipt()
    resigned = envelope.sign(first.receipt, pt.identity(2), now_ms=START)  # same answer, another nonce
    second = verify_countersigned_receipt(countersign_receipt(resigned, pt.identity(1)))
    small, large = sorted([first, second], key=lambda r: r.digest)
    async with trio_asyncio.open_loop(), open_evidence_store(tmp_path, epoch_ms=EPOCH_MS) as store:
        assert await store.add_receipts([large]) == ["stored"]
        assert await store.add_receipts([large, small]) == ["duplicate", "stored"]
        assert await store.add_receipts([large]) == ["duplicate"]
        assert await store.digests(EPOCH) == [small.digest]
        facts, credits = await store.facts(EPOCH)
        assert [f.digest for f in facts] == [small.digest]
        assert list(credits.values()) == [first.receipt.credit]
        assert await store.countersigned([small.digest, b"\0" * 32]) == [small.countersigned]


@pytest.mark.trio
async def test_a_settled_epoch_takes_nothing_more_and_survives_a_reopen(tmp_path):
    held, late = _receipt(prompt="held"), _receipt(prompt="late")
    async with trio_asyncio.open_loop():
        async with open_evidence_store(tmp_path, epoch_ms=EPOCH_MS) as store:
            await store.add_receipts([held])
            facts, credits = await store.facts(EPOCH)
            settled = settle_epoch(EPOCH, EPOCH_MS, facts, credits, _snapshot(), _market())
            await store.record_settlement(settled, snapshot_block=7, deadline=99, root_status="none")
            assert await store.add_receipts([late]) == ["duplicate"]
        async with open_evidence_store(tmp_path, epoch_ms=EPOCH_MS) as store:
            record = await store.settlement(EPOCH)
            assert record.receipts_commitment == settled.receipts_commitment
            assert record.carry == settled.carry()
            assert [b.batch_id for b in record.debits] == [EPOCH << 16]
            assert not record.finished
            record = await store.update_settlement(EPOCH, debit_settled=EPOCH << 16)
            assert record.finished
            assert await store.unfinished() == []
            assert (await store.last_settlement()).epoch == EPOCH
            assert await store.last_settlement(before=EPOCH) is None


@pytest.mark.trio
async def test_closing_an_empty_epoch_is_remembered_and_closes_it_to_late_receipts(tmp_path):
    late = _receipt(prompt="late")
    async with trio_asyncio.open_loop():
        async with open_evidence_store(tmp_path, epoch_ms=EPOCH_MS) as store:
            assert await store.next_epoch() is None
            await store.close_epoch(EPOCH)
            await store.close_epoch(EPOCH - 5)  # never backwards
        async with open_evidence_store(tmp_path, epoch_ms=EPOCH_MS) as store:
            assert await store.next_epoch() == EPOCH + 1  # a restart resumes here
            assert await store.add_receipts([late]) == ["duplicate"]
