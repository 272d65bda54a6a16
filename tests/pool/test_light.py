"""The light client against real `dolphin node` processes on the tiny model, through a real relay.

Five nodes share the module: one listening directly, four reachable only through the relay. Two tests
kill a node each and one freezes a node for a while, so every test asks only for the nodes still alive
and needs at most what is left after both kills, in whatever order the tests run: two nodes behind the
relay, or two in all.
"""

import signal

import pytest
import trio

from node.models import load_manifest
from node.testing import running_pool
from pool.errors import NoNodeAvailable, UnknownModel
from pool.light import LightConfig, LightSettings, _continuation, open_light_client
from pool.routing import Preferences
from pool.watch import WatchSettings
from protocols.inference import verify_countersigned_receipt
from protocols.messages import ChatMessage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMPT = [("user", "Tell me a long story about the sea.")]


@pytest.fixture(scope="module")
def network(tmp_path_factory, tiny_model_dir):
    with running_pool(tmp_path_factory.mktemp("light"), tiny_model_dir, direct=1, hidden=4) as (relay, nodes):
        manifest = load_manifest(tiny_model_dir)
        named = {"direct": nodes[0], **{f"hidden-{i}": node for i, node in enumerate(nodes[1:])}}
        yield relay, named, manifest.model_id(), manifest.name


def _config(relay, **settings) -> LightConfig:
    return LightConfig(
        bootstrap=(relay.addr,),
        settings=LightSettings(**{"stall_timeout": 5.0, **settings}),  # a node dead behind a relay is silence
        watch=WatchSettings(first_discovery_interval=0.3),
    )


def _alive(nodes: dict) -> dict:
    """The module's nodes that no test has killed, by peer id."""
    return {node.peer_id: node for node in nodes.values() if node.alive()}


async def _all_members(client, model, count: int) -> None:
    with trio.fail_after(60):
        while len(client.watcher.candidates(model)) < count:
            await client.watcher.wait_for_members(model, 5)
            await trio.sleep(0.2)


@pytest.mark.unit
def test_the_answer_so_far_becomes_a_trailing_assistant_turn():
    chat = (ChatMessage(role="user", content="Hi"),)
    assert _continuation(chat, "") == chat
    assert _continuation(chat, "Hello") == (*chat, ChatMessage(role="assistant", content="Hello"))
    prefixed = (*chat, ChatMessage(role="assistant", content="Well,"))
    assert _continuation(prefixed, " yes") == (*chat, ChatMessage(role="assistant", content="Well, yes"))


@pytest.mark.trio
async def test_a_model_resolves_by_name_or_id_and_an_unknown_name_is_refused(network):
    relay, nodes, model, name = network
    async with open_light_client(_config(relay)) as client:
        assert await client.watcher.resolve(name) == model
        assert await client.watcher.resolve(model.hex()) == model
        assert await client.watcher.resolve("0x" + model.hex()) == model
        with pytest.raises(UnknownModel):
            await client.watcher.resolve("no-such-model", timeout=2)
        await _all_members(client, model, len(_alive(nodes)))
        assert client.watcher.name_of(model) == name
        # Without a chain, "any node" is the default, and bonded-only can be met by nobody.
        assert client.preferences.nodes == "any"
        with pytest.raises(NoNodeAvailable, match="bonded-only needs a chain"):
            await client.ask(model, PROMPT, max_tokens=4, preferences=Preferences(nodes="bonded"))


@pytest.mark.trio
async def test_requests_reach_nodes_behind_the_relay_and_spread_over_them(network):
    relay, nodes, model, _ = network
    hidden = {peer for peer, node in _alive(nodes).items() if node is not nodes["direct"]}
    assert len(hidden) >= 2
    async with open_light_client(_config(relay)) as client:
        await _all_members(client, model, len(_alive(nodes)))
        client.router.failed(nodes["direct"].peer_id, now=trio.current_time())  # relayed nodes only
        answers = []

        async def ask(index: int) -> None:
            answers.append(await client.ask(model, [("user", f"Question {index}?")], max_tokens=8))

        async with trio.open_nursery() as nursery:
            for index in range(12):
                nursery.start_soon(ask, index)
    assert {answer.node for answer in answers} <= hidden
    assert len({answer.node for answer in answers}) >= 2  # load spread over the pool
    for answer in answers:
        # The tiny model is random: it may end on its end-of-sequence token before max_tokens.
        assert 1 <= answer.tokens_out == answer.tokens_delivered <= 8
        assert (
            answer.finish_reason == "stop"
            if answer.tokens_out < 8
            else answer.finish_reason in ("stop", "length")
        )
        assert answer.receipt_stored and answer.failovers == 0
        (completion,) = answer.receipts
        verified = verify_countersigned_receipt(completion.countersigned_receipt)
        assert verified.receipt.tokens_out == answer.tokens_out and verified.receipt.client is None


@pytest.mark.trio
async def test_a_node_killed_mid_stream_is_replaced_without_the_caller_seeing_an_error(network):
    relay, nodes, model, _ = network
    by_peer = _alive(nodes)
    assert len(by_peer) >= 3  # at most the other killer's node is gone: two stay for the failover
    async with open_light_client(_config(relay)) as client:
        await _all_members(client, model, len(by_peer))
        pieces = []
        async with client.stream(model, PROMPT, max_tokens=400) as answer:
            async for piece in answer:
                if not pieces:  # the first piece arrived: the node dies under the stream
                    victim = by_peer[answer.node]
                    victim.process.send_signal(signal.SIGKILL)
                pieces.append(piece)
        result = answer.result
    (victims_part,) = [attempt for attempt in result.attempts if attempt.peer_id == victim.peer_id]
    assert result.failovers >= 1 and victims_part.error and victims_part.tokens_delivered >= 1
    # A dead node lost its answer; it did not send one that failed a check (which would count against it).
    assert "stopped answering" in victims_part.error and "failed a check" not in victims_part.error
    assert result.attempts[-1].error is None and result.node != victim.peer_id
    assert result.text == "".join(piece.text for piece in pieces)
    # The dead node sent no receipt; the one that finished signed only the tokens it added, and every
    # token the caller got is counted once, on the attempt that delivered it.
    assert [r.peer_id for r in result.receipts] == [result.node]
    assert result.attempts[-1].tokens_delivered == result.tokens_out
    assert result.tokens_delivered == sum(attempt.tokens_delivered for attempt in result.attempts)
    assert result.tokens_delivered <= 400 and result.receipt_stored


@pytest.mark.trio
async def test_a_whole_answer_survives_its_node_dying(network):
    relay, nodes, model, _ = network
    by_peer = _alive(nodes)
    assert len(by_peer) >= 3
    async with open_light_client(_config(relay)) as client:
        await _all_members(client, model, len(by_peer))
        killed = []

        async def kill_whoever_answers() -> None:
            while True:
                busy = [p for p, s in client.router.statistics(trio.current_time()).items() if s["in_flight"]]
                if busy and busy[0] in by_peer:
                    by_peer[busy[0]].process.send_signal(signal.SIGKILL)
                    killed.append(busy[0])
                    return
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_whoever_answers)
            result = await client.ask(model, PROMPT, max_tokens=400)
    assert killed and [bool(a.error) for a in result.attempts if a.peer_id == killed[0]] == [True]
    assert result.node != killed[0] and result.finish_reason in ("stop", "length") and result.receipt_stored


@pytest.mark.trio
async def test_a_node_that_stalls_mid_answer_is_left_after_the_stall_deadline(network):
    relay, nodes, model, _ = network
    by_peer = _alive(nodes)
    assert len(by_peer) >= 3
    frozen = []
    async with open_light_client(_config(relay, stall_timeout=3)) as client:
        await _all_members(client, model, len(by_peer))
        try:
            with trio.fail_after(60):
                async with client.stream(model, PROMPT, max_tokens=400) as answer:
                    async for _ in answer:
                        if not frozen:  # the node freezes with its sockets open: no error, just silence
                            frozen.append(answer.node)
                            by_peer[answer.node].pause()
        finally:
            for peer in frozen:
                by_peer[peer].resume()
    result = answer.result
    assert [attempt.reason for attempt in result.attempts if attempt.peer_id == frozen[0]] == ["stalled"]
    assert result.node != frozen[0] and result.attempts[-1].error is None
