"""The evidence store: a permanent spent set, one receipt per answer, settled epochs closed for good."""

import pytest
import trio_asyncio

from chain.rewards import RewardParams
from chain.snapshot import ChainSnapshot
from protocols import envelope
from protocols import testing as pt
from protocols.eth import TypedDomain
from protocols.inference import countersign_receipt, verify_countersigned_receipt
from protocols.testing import countersigned_receipt
from validator import settle_epoch
from validator.evidence import open_evidence_store
from validator.settlement import EpochMarket, receipt_commitment

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
        assert await store.commitment(EPOCH) == (1, receipt_commitment([large.digest]))
        assert await store.add_receipts([large, small]) == ["duplicate", "stored"]
        assert await store.commitment(EPOCH) == (1, receipt_commitment([small.digest]))  # not a stale one
        assert await store.add_receipts([large]) == ["duplicate"]
        assert await store.digests(EPOCH) == [small.digest]
        facts, credits = await store.facts(EPOCH)
        assert [f.digest for f in facts] == [small.digest]
        assert list(credits.values()) == [first.receipt.credit]
        assert await store.countersigned([small.digest, b"\0" * 32]) == [small.countersigned]


@pytest.mark.trio
async def test_an_authorisation_counts_as_verified_only_in_the_domain_it_was_verified_in(tmp_path):
    """The close takes the store's word for authorisations verified on their way in, so the store vouches
    only for what its caller said it verified, in that domain: a store that outlived a redeployment
    (another Credits contract, another domain) checks them again."""
    checked, unchecked = _receipt(prompt="checked"), _receipt(prompt="unchecked")
    redeployed = TypedDomain("Dolphin Network", "1", 31337, b"\2" * 20)
    async with trio_asyncio.open_loop(), open_evidence_store(tmp_path, epoch_ms=EPOCH_MS) as store:
        assert await store.add_receipts([checked], credits_verified_in=pt.TEST_DOMAIN) == ["stored"]
        assert await store.add_receipts([unchecked]) == ["stored"]
        _, credits = await store.facts(EPOCH)
        digest_of = {credit: digest for digest, credit in credits.items()}
        assert await store.verified_credits(EPOCH, pt.TEST_DOMAIN) == {digest_of[checked.receipt.credit]}
        assert await store.verified_credits(EPOCH, redeployed) == set()
        assert await store.verified_credits(EPOCH + 1, pt.TEST_DOMAIN) == set()


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


def _answers(count: int, resigned: int):
    """`count` receipts of distinct answers, and `resigned` more: answers among them signed again (another
    envelope nonce, so another digest), each in a random order."""
    import random

    rng = random.Random(5)
    first = [_receipt(prompt=f"answer {n}") for n in range(count)]
    again = []
    for held in rng.sample(first, resigned):
        signed = envelope.sign(held.receipt, pt.identity(2), now_ms=START)
        again.append(verify_countersigned_receipt(countersign_receipt(signed, pt.identity(1))))
    receipts = first + again + first[:3]  # and three it already has
    rng.shuffle(receipts)
    return receipts


@pytest.mark.trio
async def test_a_batch_is_stored_as_one_receipt_at_a_time_would_be_in_a_few_statements(tmp_path, monkeypatch):
    """add_receipts used to cost three statements per receipt (1.1 ms each through aiosqlite: a validator
    stored ~900 receipts/s); a batch now costs a few, with the same verdicts and the same receipts held as
    adding them one by one (the smaller digest of an answer stays, a settled epoch takes nothing)."""
    import validator.evidence as evidence

    monkeypatch.setattr(evidence, "_PAIRS_PER_QUERY", 7)  # several queries per batch, as with 256 receipts
    monkeypatch.setattr(evidence, "_DIGESTS_PER_QUERY", 5)
    receipts = _answers(40, 15)
    async with (
        trio_asyncio.open_loop(),
        open_evidence_store(tmp_path / "one", epoch_ms=EPOCH_MS) as one,
        open_evidence_store(tmp_path / "batched", epoch_ms=EPOCH_MS) as batched,
    ):
        singly = [status for r in receipts for status in await one.add_receipts([r])]
        statements = []
        for name in ("execute", "executemany"):
            method = getattr(batched._db, name)

            async def counted(sql, *args, method=method):
                statements.append(sql)
                return await method(sql, *args)

            monkeypatch.setattr(batched._db, name, counted)
        together = await batched.add_receipts(receipts[:30]) + await batched.add_receipts(receipts[30:])
        assert together == singly and singly.count("stored") > 40  # replacements were stored too
        assert len(statements) <= 2 * (2 + 5 + 3)  # per batch: two reads, 30/7 lookups, three writes
        assert await batched.digests(EPOCH) == await one.digests(EPOCH)
        assert len(await batched.digests(EPOCH)) == 40
        facts, credits = await batched.facts(EPOCH)
        assert {f.digest for f in facts} == set(await one.digests(EPOCH))
        assert (set(facts), credits) == (set((await one.facts(EPOCH))[0]), (await one.facts(EPOCH))[1])
        assert list(credits.values()) == [receipts[0].receipt.credit]  # one session paid for all
        held = await one.digests(EPOCH)
        asked = [held[3], b"\0" * 32, held[0], *held[5:17], held[3]]
        assert await batched.countersigned(asked) == await one.countersigned(asked)
        by_digest = {r.digest: r.countersigned for r in receipts}
        assert await batched.countersigned(asked) == [by_digest[d] for d in asked if d in by_digest]
