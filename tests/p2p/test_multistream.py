"""Pipelined protocol selection (p2p/multistream.py): header and first proposal leave together."""

import pytest
from libp2p.protocol_muxer.exceptions import MultiselectClientError, MultiselectCommunicatorError
from libp2p.protocol_muxer.multiselect_client import MultiselectClient

from p2p.multistream import install_pipelined_selection

pytestmark = [pytest.mark.unit, pytest.mark.trio]

HEADER = "/multistream/1.0.0"


class ScriptedPeer:
    """A communicator whose peer answers from a script; it records what was written and when reads came."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.log: list[str] = []

    async def write(self, message: str) -> None:
        self.log.append(f"write {message}")

    async def read(self) -> str:
        self.log.append("read")
        if not self.answers:
            raise MultiselectCommunicatorError("fail to read from multiselect communicator")
        return self.answers.pop(0)


@pytest.fixture(autouse=True)
def _pipelined():
    install_pipelined_selection()


async def test_the_header_and_the_first_proposal_leave_before_any_answer_is_read():
    peer = ScriptedPeer(HEADER, "/dolphin/a/1")
    assert await MultiselectClient().select_one_of(["/dolphin/a/1"], peer) == "/dolphin/a/1"
    # One round trip: py-libp2p's own client read the peer's header before proposing (two).
    assert peer.log == [f"write {HEADER}", "write /dolphin/a/1", "read", "read"]


async def test_a_refused_proposal_costs_one_more_round_trip_and_the_next_is_tried():
    peer = ScriptedPeer(HEADER, "na", "/dolphin/b/1")
    assert await MultiselectClient().select_one_of(["/dolphin/a/1", "/dolphin/b/1"], peer) == "/dolphin/b/1"
    assert peer.log == [f"write {HEADER}", "write /dolphin/a/1", "read", "read", "write /dolphin/b/1", "read"]


async def test_refusals_mismatches_and_dropped_streams_say_what_happened():
    with pytest.raises(MultiselectClientError, match="^protocols not supported: tried"):
        await MultiselectClient().select_one_of(["/a", "/b"], ScriptedPeer(HEADER, "na", "na"))
    with pytest.raises(MultiselectClientError, match="protocol ID mismatch"):
        await MultiselectClient().select_one_of(["/a"], ScriptedPeer("/multistream/2.0.0", "/a"))
    with pytest.raises(MultiselectClientError, match="unrecognized response"):
        await MultiselectClient().select_one_of(["/a"], ScriptedPeer(HEADER, "/b"))
    with pytest.raises(MultiselectClientError, match="protocol read failed"):
        await MultiselectClient().select_one_of(["/a"], ScriptedPeer(HEADER))
    with pytest.raises(MultiselectClientError, match="no protocol to propose"):
        await MultiselectClient().select_one_of([], ScriptedPeer(HEADER))
