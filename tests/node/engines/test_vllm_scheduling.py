"""What vLLM's scheduler does for the engine: leaving an answer aborts it on the server, and local requests
go ahead of queued network ones (`--scheduling-policy priority`).

Both depend on what the server runs besides them: a server that has just served other tests (its prefix
cache warm with their prompts, requests of theirs still finishing) schedules differently from run to run.
So these tests get a server of their own, started for this module, and count what the server finished
rather than timing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import aclosing

import pytest
import trio

from node.engines import ChatTurn, GenerationRequest, Priority
from node.engines.vllm_server import VllmServer
from tests.node.engines.conftest import TEST_SETTINGS, answer_pieces, server_counter, supervised_in_thread

# alone: in CI-like runs beside the other worker's tests, the server finished answers whose clients had
# left before it noticed, and served a queued network request ahead of a local one (each passes alone).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.vllm, pytest.mark.alone]


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir, tmp_path_factory) -> Iterator[VllmServer]:
    """A server for this module alone (it shadows the package's shared one)."""
    log_path = tmp_path_factory.mktemp("vllm-scheduling") / "vllm-server.log"
    with supervised_in_thread(tiny_model_dir, log_path, TEST_SETTINGS) as server:
        yield server


@pytest.mark.trio
async def test_leaving_generate_early_aborts_the_request_on_the_server(engine, vllm_server):
    """Eight long answers fill the server's 4 slots and its queue. The client leaves one running answer
    after its first piece and cancels one more request while it is still queued: the server aborts both
    (an aborted request never counts as finished there), and the other seven run to their end.

    Counting finished requests, not timing them, keeps this true on a loaded machine, where vLLM's API
    server can trail its engine by a second or more."""
    url = vllm_server.url
    before = server_counter(url, "vllm:request_success_total")
    # ignore_eos: each runs all its tokens, whatever the tiny model samples; nearly the model's whole length,
    # so that the abandoned answer is still running when a loaded server notices its client left (at 800
    # tokens it once finished first, and counted as an eighth success).
    answer = GenerationRequest(messages=(ChatTurn("user", "Hello!"),), max_tokens=1900, ignore_eos=True)
    started = [trio.Event() for _ in range(8)]
    scopes = [trio.CancelScope() for _ in range(8)]
    finished: list[int] = []

    async def take_answer(index: int) -> None:
        with scopes[index]:
            async with aclosing(engine.generate(answer)) as pieces:
                async for piece in pieces:
                    started[index].set()
                    if piece.finish_reason == "length":
                        finished.append(index)

    queued = trio.CancelScope()

    async def queued_request() -> None:
        with queued:
            await answer_pieces(engine, answer)

    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            for index in range(8):
                nursery.start_soon(take_answer, index)
            while not any(event.is_set() for event in started):
                await trio.sleep(0.05)
            nursery.start_soon(queued_request)  # behind the queued ones: 4 slots, 8 answers
            await trio.sleep(0.5)
            queued.cancel()  # left before any piece
            running_one = next(i for i in range(8) if started[i].is_set())
            scopes[running_one].cancel()  # left mid-answer
    assert len(finished) == 7 and running_one not in finished
    with trio.fail_after(10):  # the server's counters follow its engine by a moment
        while server_counter(url, "vllm:request_success_total") - before < 7:
            await trio.sleep(0.2)
    await trio.sleep(1.0)
    assert server_counter(url, "vllm:request_success_total") - before == 7


@pytest.mark.trio
async def test_local_requests_go_ahead_of_queued_network_requests(engine):
    """With the server's 4 slots busy and more long answers queued, two network requests and then a local
    one arrive: the local one, last in, gets its first token before either network request (vLLM runs
    with `--scheduling-policy priority`; the engine sends `GenerationRequest.priority`).

    Fillers run to max_tokens (`ignore_eos`: the tiny model would otherwise end some at once, and a run
    ended with nothing ever queued). A slot may still free up before the local request reaches the server
    (an HTTP request and a tokenisation away, up to REACHES_SERVER_S on a loaded machine); then the network
    requests started on merit and the round proves nothing, so it is run again (at most three rounds), and
    judged only when both network requests were still queued by then."""
    for _ in range(3):
        first_tokens, queued_when_local_arrived = await _priority_round(engine)
        if queued_when_local_arrived:
            assert first_tokens[0] == "local", first_tokens
            return
    pytest.fail("the network requests never stayed queued long enough to test priority")


REACHES_SERVER_S = 1.0
FILLERS = 24  # 4 slots: six waves of 800 tokens


async def _priority_round(engine) -> tuple[list[str], bool]:
    first_tokens: list[str] = []
    first_token_at: list[float] = []

    async def ask(label: str, priority: int) -> None:
        request = GenerationRequest(messages=(ChatTurn("user", "Hello!"),), max_tokens=800, priority=priority)
        async with aclosing(engine.generate(request)) as pieces:
            async for _ in pieces:
                first_tokens.append(label)
                first_token_at.append(trio.current_time())
                break

    async def wait_until_waiting(count: int) -> None:
        # Generous: on a loaded 2-core machine the server takes a while to queue a dozen requests.
        with trio.move_on_after(180):
            while engine.load().waiting < count:
                await trio.sleep(0.05)
                await engine.refresh_load()
            return
        pytest.fail(f"the server never queued {count} requests: {engine.load()}")

    async with trio.open_nursery() as nursery:
        # Fillers rank between local and network requests, so the network requests queue behind every
        # filler however their arrivals interleave: nothing but a local request can overtake them.
        filler = GenerationRequest(
            messages=(ChatTurn("user", "Hello!"),),
            max_tokens=800,
            ignore_eos=True,
            priority=(Priority.LOCAL + Priority.NETWORK) // 2,
        )
        # Enough fillers that several waves still wait when the local request arrives, however long it takes
        # to reach the server on a loaded machine: the network requests cannot start before those waves.
        for _ in range(FILLERS):
            nursery.start_soon(answer_pieces, engine, filler)
        await wait_until_waiting(4)
        nursery.start_soon(ask, "network-1", Priority.NETWORK)
        nursery.start_soon(ask, "network-2", Priority.NETWORK)
        # Both reach the server's queue (milliseconds) behind 4 or more queued answers (seconds of work).
        await trio.sleep(1.0)
        local_sent_at = trio.current_time()
        nursery.start_soon(ask, "local", Priority.LOCAL)
        with trio.fail_after(120):
            while len(first_tokens) < 3:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()  # the remaining fillers are aborted, not finished
    queued_when_local_arrived = all(
        at > local_sent_at + REACHES_SERVER_S
        for label, at in zip(first_tokens, first_token_at, strict=True)
        if label != "local"
    )
    return first_tokens, queued_when_local_arrived
