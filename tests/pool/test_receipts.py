"""The gateway's receipt book: answers' receipts found by answer id or request id, reports queued."""

import pytest
import trio_asyncio

from pool.receipts import ServedReceipt, open_receipt_book

pytestmark = pytest.mark.unit


def _receipt(request_id: bytes, answer_id: str) -> ServedReceipt:
    return ServedReceipt(
        request_id=request_id,
        answer_id=answer_id,
        peer_id="12D3KooW",
        node_key=b"\1" * 32,
        model=b"\2" * 32,
        tokens_in=7,
        tokens_out=3,
        countersigned=b"evidence",
    )


@pytest.mark.trio
async def test_receipts_by_answer_or_request_id_and_reports_until_published(tmp_path):
    async with trio_asyncio.open_loop(), open_receipt_book(tmp_path) as book:
        await book.add([_receipt(b"\x0a" * 16, "chatcmpl-1"), _receipt(b"\x0b" * 16, "chatcmpl-1")])
        await book.add([_receipt(b"\x0a" * 16, "chatcmpl-1")])  # filed twice: kept once
        assert [r.request_id for r in await book.find("chatcmpl-1")] == [b"\x0a" * 16, b"\x0b" * 16]
        (one,) = await book.find("0b" * 16)
        assert one.answer_id == "chatcmpl-1" and one.countersigned == b"evidence"
        assert await book.find("chatcmpl-2") == [] and await book.find("not hex") == []
        first = await book.add_report(b"\x0a" * 16, b"report-1")
        await book.add_report(b"\x0b" * 16, b"report-2")
        await book.mark_published(first)
        assert await book.pending_reports() == [(first + 1, b"report-2")]
    async with trio_asyncio.open_loop(), open_receipt_book(tmp_path) as book:  # durable across opens
        assert len(await book.find("chatcmpl-1")) == 2 and len(await book.pending_reports()) == 1
