"""`dolphin node --engine vllm` through the network: a light peer's sealed request answered by vLLM, greedy
output identical to the in-process engine's on the same model folder."""

import contextlib

import pytest
import trio

from node.engines import ChatTurn, GenerationRequest
from node.engines.transformers import TransformersEngine
from node.models import load_manifest
from node.processes import node_process
from node.testing import find_member, watch_pool
from p2p import HostConfig, open_host
from p2p.processes import relay_process
from pool import complete
from protocols.keys import Identity
from tests.node.engines.conftest import server_counter

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.vllm]

PROMPTS = ("What is the capital of France?", "Write a haiku about the sea.")
MAX_TOKENS = 16


async def _in_process_answers(model_dir) -> list[tuple[str, int]]:
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(model_dir))
    try:
        answers = []
        for prompt in PROMPTS:
            request = GenerationRequest(messages=(ChatTurn("user", prompt),), max_tokens=MAX_TOKENS)
            async with contextlib.aclosing(engine.generate(request)) as pieces:
                ids = [token for piece in [p async for p in pieces] for token in piece.token_ids]
            answers.append((await engine.detokenize(ids), len(ids)))
        return answers
    finally:
        await engine.aclose()


@pytest.mark.trio
async def test_a_vllm_node_answers_a_light_peer_like_the_in_process_engine(
    tmp_path, tiny_model_dir, vllm_server
):
    model_id = load_manifest(tiny_model_dir).model_id()
    expected = await _in_process_answers(tiny_model_dir)
    relay = relay_process(tmp_path / "relay")
    await relay.wait_ready()
    node = node_process(
        tmp_path / "node",
        tiny_model_dir,
        "--bootstrap",
        relay.addr,
        "--engine",
        "vllm",
        "--engine-url",
        vllm_server.url,
        "--max-batch",
        "4",
    )
    served_before = server_counter(vllm_server.url, "vllm:request_success_total")
    try:
        await node.wait_ready(180.0)
        config = HostConfig.light_client(tmp_path / "client", bootstrap=(relay.addr,))
        async with open_host(config) as client:
            view = await watch_pool(client, model_id)
            member = await find_member(client, view, node.peer_id)
            for prompt, (text, tokens) in zip(PROMPTS, expected, strict=True):
                completion = await complete(
                    client,
                    member.contact,
                    [("user", prompt)],
                    identity=Identity.generate(),
                    max_tokens=MAX_TOKENS,
                    temperature=0.0,
                )
                assert (completion.text, completion.tokens_out) == (text, tokens)
                assert completion.receipt_stored
    finally:
        node.stop()
        relay.stop()
    # The answers (and the node's self-benchmark) came from the vLLM server, not an engine of the node's own.
    served = server_counter(vllm_server.url, "vllm:request_success_total") - served_before
    assert served >= len(PROMPTS)
