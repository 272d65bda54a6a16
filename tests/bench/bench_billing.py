"""billing: over 100 varied chats, the counts a client countersigns equal the model's tokenizer's exactly.

A real node (the inference service over libp2p hosts on 127.0.0.1, the in-process transformers engine)
answers each chat; the client (`pool.client.complete` with the model's `TokenizerCounter`) countersigns
only exact bills. Reported: chats answered, receipts countersigned, how many of them have `tokens_in`
equal to the tokenizer's chat-template count and `tokens_out` equal to the ids received, and the byte
bound a client without the tokenizer would have accepted, as a multiple of the real count (what a node
could have billed). Chats: system prompts or none, one to three turns, continued answers, code, numbers,
non-Latin scripts and emoji, short and long; greedy, sampled, seeded and stop-string settings.
Models: $DOLPHIN_BENCH_BILLING_MODELS (comma-separated, default "tiny,smollm2"), under .devdata/models.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
from pathlib import Path

import trio

from cli.demo import prepare_model
from node.engines.transformers import TransformersEngine
from node.models import load_manifest
from node.models.tokens import TokenizerCounter
from pool import AnswerFailedCheck, complete
from protocols.inference import prompt_token_bound
from protocols.keys import Identity
from protocols.messages import ChatMessage

MODELS_DIR = Path(".devdata/models")
CHATS = 100
SYSTEMS = (None, "You are a concise assistant.", "Answer in the style of a ship's log. Keep it short.")
TOPICS = (
    "the tides",
    "prime numbers",
    "sourdough bread",
    "the Hanseatic League",
    "photosynthesis",
    "chess openings",
    "Rust's borrow checker",
    "東京の地下鉄",
    "les volcans d'Auvergne",
    "dolphins 🐬 and sonar",
)
ASKS = (
    "Explain {} in two sentences.",
    "Write a haiku about {}.",
    "Give me three facts about {}, as a numbered list.",
    "What is the most common misconception about {}?",
    "Write a Python function related to {} and explain it.",
)


def chats(rng: random.Random, count: int) -> list[tuple[list[tuple[str, str]], dict]]:
    """`count` varied chats with sampling settings (module docstring)."""
    drawn = []
    for n in range(count):
        topic = rng.choice(TOPICS)
        chat: list[tuple[str, str]] = []
        system = rng.choice(SYSTEMS)
        if system:
            chat.append(("system", system))
        for _ in range(rng.choice((1, 1, 2, 3))):
            chat.append(("user", rng.choice(ASKS).format(topic) + " " * rng.randrange(2) + f"(#{n})"))
            chat.append(("assistant", f"Here is something about {topic}: " + "la " * rng.randrange(1, 30)))
        if rng.random() < 0.8:
            chat.pop()  # ends on the user's turn; otherwise the answer continues the assistant's
        seeded = {"temperature": 1.0, "seed": rng.randrange(1 << 32)}
        options = rng.choice(({}, {"temperature": 0.8}, seeded, {"stop": ("\n",)}))
        drawn.append((chat, options))
    return drawn


async def _measure(model_dir: Path) -> dict:
    from tests.node.test_inference import _network

    counter = TokenizerCounter.from_model_dir(model_dir, load_manifest(model_dir).model_id())
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(model_dir, max_batch=4))
    exact = countersigned = refused = 0
    bound_ratio = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with _network(Path(tmp), engine) as net:
                for chat, options in chats(random.Random(20), CHATS):
                    messages = tuple(ChatMessage(role=r, content=c) for r, c in chat)
                    try:
                        answer = await complete(
                            net.client,
                            net.contact,
                            messages,
                            identity=Identity.generate(),
                            counter=counter,
                            max_tokens=24,
                            **options,
                        )
                    except AnswerFailedCheck:
                        refused += 1
                        continue
                    countersigned += answer.countersigned_receipt is not None
                    mine = counter.prompt_tokens(messages)
                    exact += (
                        answer.tokens_in == mine
                        and answer.receipt.tokens_out == len(answer.token_ids)
                        and counter.output_matches(answer.token_ids, answer.text, options.get("stop", ()))
                    )
                    bound_ratio.append(prompt_token_bound(messages) / mine)
    finally:
        engine.close()
    return {
        "chats": CHATS,
        "countersigned": countersigned,
        "exact": exact,
        "refused_by_the_client": refused,
        "byte_bound_over_real_count_median": round(statistics.median(bound_ratio), 2),
        "byte_bound_over_real_count_max": round(max(bound_ratio), 2),
    }


def run(out: Path) -> dict:
    names = [n for n in os.environ.get("DOLPHIN_BENCH_BILLING_MODELS", "tiny,smollm2").split(",") if n]
    return {name: trio.run(_measure, prepare_model(name, MODELS_DIR)) for name in names}
