"""The no-free-answers budget (node.unacknowledged), on a clock the test moves."""

import pytest

from node.unacknowledged import UnacknowledgedAnswers

pytestmark = pytest.mark.unit

PAYER = b"wallet:" + bytes(20)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answers_whose_receipts_are_on_their_way_do_not_count():
    # A gateway's wallet with many requests in flight at once was refused after three of them.
    book = UnacknowledgedAnswers(budget=3, window_s=3600, clock=Clock())
    in_flight = [book.answered(PAYER) for _ in range(8)]
    assert book.allows(PAYER) and book.owed(PAYER) == 0
    for ticket in in_flight[:2]:
        book.lapsed(ticket)
    assert book.allows(PAYER) and book.owed(PAYER) == 2
    book.lapsed(in_flight[2])
    assert not book.allows(PAYER) and book.owed(PAYER) == 3
    assert book.allows(b"wallet:" + bytes(19) + b"\x01")  # others are served


def test_a_lapsed_answer_counts_for_the_window_from_when_it_lapsed():
    clock = Clock()
    book = UnacknowledgedAnswers(budget=1, window_s=60, clock=clock)
    ticket = book.answered(PAYER)
    clock.now += 50  # a slow receipt wait: the window starts when it ends
    book.lapsed(ticket)
    clock.now += 59
    assert not book.allows(PAYER)
    clock.now += 2
    assert book.allows(PAYER) and book.owed(PAYER) == 0


def test_the_table_of_payers_is_bounded():
    book = UnacknowledgedAnswers(budget=1, window_s=3600, max_payers=2, clock=Clock())
    payers = [b"peer:" + bytes([n]) for n in range(3)]
    for payer in payers:
        book.lapsed(book.answered(payer))
    assert book.allows(payers[0]) and not book.allows(payers[1]) and not book.allows(payers[2])
