"""Exact bills: a client with the model's tokenizer countersigns a receipt only when its `tokens_in` and
`tokens_out` are the client's own counts. Real node, real tiny model, real hosts on 127.0.0.1."""

import pytest

from node.inference import ServiceLimits
from node.models import load_manifest
from node.models.tokens import TokenizerCounter
from pool import AnswerFailedCheck, complete
from protocols.keys import Identity
from protocols.messages import ChatMessage
from tests.node.test_inference import PROMPT, _network
from tests.validator.cheats import InflatingEngine

pytestmark = [pytest.mark.integration]

LIMITS = ServiceLimits(max_new_tokens=64, receipt_timeout=5)
CHATS = (
    [("user", PROMPT)],
    [("system", "You answer briefly."), ("user", "Name three rivers of Europe, please.")],
    [("user", "Count to five:"), ("assistant", "1, 2,")],  # a continued answer (failover's shape)
    [("user", "Ünïcödé and emoji 🐬 cost more bytes than tokens.")],
)


@pytest.fixture(scope="module")
def counter(tiny_model_dir):
    return TokenizerCounter.from_model_dir(tiny_model_dir, load_manifest(tiny_model_dir).model_id())


async def _ask(net, counter, chat, **options):
    return await complete(
        net.client, net.contact, chat, identity=Identity.generate(), counter=counter, max_tokens=12, **options
    )


@pytest.mark.trio
async def test_honest_bills_are_exact_and_countersigned(tmp_path, tiny_engine, counter):
    async with _network(tmp_path, tiny_engine, limits=LIMITS) as net:
        for chat in CHATS:
            for options in ({}, {"temperature": 0.9, "seed": 5}, {"stop": (",",)}):
                answer = await _ask(net, counter, chat, **options)
                messages = [ChatMessage(role=role, content=content) for role, content in chat]
                assert answer.receipt_stored
                assert answer.tokens_in == counter.prompt_tokens(messages)
                assert answer.receipt.tokens_out == len(answer.token_ids)


@pytest.mark.trio
async def test_inflated_prompt_counts_are_refused(tmp_path, tiny_engine, counter):
    """Attack: the node adds 3 prompt tokens to every bill, far inside the byte bound clients used to
    accept. A client with the tokenizer refuses to countersign; one without it signs the inflated bill."""
    eos = counter.tokenizer.eos_token_id
    inflating = InflatingEngine(tiny_engine, eos_id=eos, extra_prompt=3)
    async with _network(tmp_path, inflating, limits=LIMITS) as net:
        with pytest.raises(AnswerFailedCheck, match="tokens in"):
            await _ask(net, counter, CHATS[0])
        signed = await _ask(net, None, CHATS[0])  # the byte bound alone: the inflated bill passes
        messages = [ChatMessage(role="user", content=PROMPT)]
        assert signed.receipt_stored and signed.tokens_in == counter.prompt_tokens(messages) + 3


@pytest.mark.trio
async def test_padded_answers_are_refused(tmp_path, tiny_engine, counter):
    """Attack: the node slips end-of-sequence tokens into the answer: the text reads the same, but
    `tokens_out` counts them. The client with the tokenizer refuses to countersign."""
    inflating = InflatingEngine(tiny_engine, eos_id=counter.tokenizer.eos_token_id, padding=4)
    async with _network(tmp_path, inflating, limits=LIMITS) as net:
        with pytest.raises(AnswerFailedCheck, match="tokens out"):
            await _ask(net, counter, CHATS[1])
        signed = await _ask(net, None, CHATS[1])  # without the tokenizer the padded bill passes
        assert signed.receipt_stored and signed.token_ids.count(counter.tokenizer.eos_token_id) >= 4


def test_output_counts_hold_the_ids_to_the_text(counter):
    ids = counter.tokenizer.encode("The river flows, slowly.", add_special_tokens=False)
    text = counter.tokenizer.decode(ids)
    eos = counter.tokenizer.eos_token_id
    assert counter.output_matches(ids, text, ())
    assert counter.output_matches([*ids, eos], text, ())  # the end of sequence itself
    assert not counter.output_matches([*ids, eos, eos], text, ())
    assert not counter.output_matches([ids[0], eos, *ids[1:]], text, ())
    assert not counter.output_matches([*ids, *ids[:2]], text, ())  # tokens past the text
    # A stop string: the text ends before it; the last token is the one that completed it.
    cut = text.index(",")
    upto = next(n for n in range(1, len(ids) + 1) if "," in counter.tokenizer.decode(ids[:n]))
    assert counter.output_matches(ids[:upto], text[:cut], (",",))
    assert not counter.output_matches(ids[: upto + 1], text[:cut], (",",))
