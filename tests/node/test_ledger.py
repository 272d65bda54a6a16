"""The ledger: receipts committed and listed by epoch, totals, nonces that outlive a restart."""

import pytest
import trio_asyncio

from node.ledger import PersistentReplayCache, open_ledger, read_ledger
from protocols.errors import ReplayError
from protocols.inference import verify_countersigned_receipt
from protocols.testing import exchange_pair

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000
NOW = 1_700_000_000_000


def _countersigned(started_at_ms: int, tokens: int, *, client_n: int = 1) -> bytes:
    client, node = exchange_pair(client_n=client_n, now_ms=started_at_ms)
    for frame in [node.header(), node.chunk("x" * tokens, tuple(range(tokens)))]:
        client.receive(frame)
    client.receive(
        node.end(
            "stop", tokens_in=5, started_at_ms=started_at_ms, first_token_ms=3, duration_ms=9, now_ms=NOW
        )
    )
    return client.countersigned_receipt()


@pytest.mark.trio
async def test_receipts_are_listed_by_epoch_with_totals_and_stored_once(tmp_path):
    evidence = [
        _countersigned(NOW, 3),
        _countersigned(NOW + 1, 4, client_n=2),
        _countersigned(NOW + DAY_MS, 7),
    ]
    async with trio_asyncio.open_loop(), open_ledger(tmp_path) as ledger:
        for data in evidence:
            assert await ledger.store_receipt(verify_countersigned_receipt(data))
        assert not await ledger.store_receipt(verify_countersigned_receipt(evidence[0]))  # a duplicate
        epoch = ledger.epoch_of(NOW)
        rows = await ledger.receipts(epoch)
        assert [r.tokens_out for r in rows] == [3, 4]
        assert all(len(bytes.fromhex(r.request_id)) == 16 and r.client is None for r in rows)
        assert [t.to_json() for t in await ledger.epoch_totals()] == [
            {"epoch": epoch, "receipts": 2, "tokens_in": 10, "tokens_out": 7, "paid_receipts": 0},
            {"epoch": epoch + 1, "receipts": 1, "tokens_in": 5, "tokens_out": 7, "paid_receipts": 0},
        ]
        assert sorted(await ledger.countersigned(epoch + 1)) == [evidence[2]]
    # Read back by another opener, as `dolphin node receipts` does.
    rows = await read_ledger(tmp_path, lambda ledger: ledger.receipts())
    assert len(rows) == 3


@pytest.mark.trio
async def test_accepted_nonces_are_refused_again_after_a_restart_until_they_expire(tmp_path):
    signer, nonce = b"\x01" * 32, b"\x02" * 16
    async with trio_asyncio.open_loop(), open_ledger(tmp_path) as ledger:
        cache = PersistentReplayCache(ledger)
        cache.check_and_remember(signer, nonce, NOW + 60_000, NOW)
        cache.check_and_remember(b"\x03" * 32, nonce, NOW + 1_000, NOW)
        await ledger.flush_nonces(NOW)
    async with trio_asyncio.open_loop(), open_ledger(tmp_path) as ledger:
        restarted = PersistentReplayCache(ledger)
        assert await restarted.load(NOW + 2_000) == 1  # the short-lived one has expired
        with pytest.raises(ReplayError):
            restarted.check_and_remember(signer, nonce, NOW + 60_000, NOW + 2_000)
        await ledger.flush_nonces(NOW + 61_000)
        assert await ledger.unexpired_nonces(NOW + 61_000) == []
