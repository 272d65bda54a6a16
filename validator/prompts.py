"""The prompts validators' sampled requests are drawn from: chats shaped like client traffic.

Chat questions, code, multi-turn conversations, system prompts, short and long. They are the validator's
own text, so they may travel in strike evidence (a user's prompt never does). Each entry is a kind (for
statistics) and the chat as (role, content) pairs; `challenges.draw_challenge` adds sampling settings.
`GENERATED` (the default) composes them from parts, millions of combinations, because a node can match a
short public list exactly; `PROMPTS`, a fixed mix of 34, is what the checks' thresholds are calibrated and
measured on (`tests/bench/calibrate_checks.py`), where a fixed, split list is the point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Chat = tuple[tuple[str, str], ...]

_LONG_CONTEXT = (
    "The Hanseatic League was a commercial and defensive confederation of merchant guilds and market towns "
    "in Central and Northern Europe. Growing from a few North German towns in the late 12th century, the "
    "League came to dominate Baltic maritime trade for three centuries along the coasts of Northern Europe. "
    "It stretched from the Baltic to the North Sea and inland during the Late Middle Ages, and diminished "
    "slowly after 1450. Merchants of the League enjoyed privileges in the cities where they traded, and "
    "their kontors in London, Bruges, Bergen and Novgorod were small walled towns of their own."
)

_CSV = "date,city,temp_c\n2024-01-01,Oslo,-4\n2024-01-01,Rome,11\n2024-01-02,Oslo,-6\n2024-01-02,Rome,12\n"

PROMPTS: tuple[tuple[str, Chat], ...] = (
    ("chat", (("user", "What is the capital of Australia?"),)),
    ("chat", (("user", "Explain in simple words why the sky is blue."),)),
    ("chat", (("user", "Give me three ideas for a rainy Sunday afternoon."),)),
    ("chat", (("user", "How many minutes are there in a week? Show the calculation."),)),
    ("chat", (("user", "Write a haiku about autumn leaves."),)),
    ("chat", (("user", "What is the difference between weather and climate?"),)),
    ("chat", (("user", "Translate 'Where is the train station?' into French, Spanish and German."),)),
    ("chat", (("user", "Summarise the story of Romeo and Juliet in two sentences."),)),
    ("chat", (("user", "hi"),)),
    ("chat", (("user", "Can you recommend a good book about the history of mathematics?"),)),
    ("chat", (("user", "List five fruits that are high in vitamin C."),)),
    ("chat", (("user", "Write a short, polite email declining a meeting invitation for Thursday."),)),
    ("chat", (("user", "Is a tomato a fruit or a vegetable? Answer briefly."),)),
    ("chat", (("user", "Describe the smell of the sea to someone who has never been there."),)),
    ("code", (("user", "Write a Python function that checks whether a string is a palindrome."),)),
    (
        "code",
        (
            (
                "user",
                "What does this SQL do?\n"
                "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 3;",
            ),
        ),
    ),
    ("code", (("user", "Fix the bug:\n\ndef mean(xs):\n    return sum(xs) / len(xs) + 1\n"),)),
    ("code", (("user", "Write a bash one-liner that counts the lines of every .py file in a folder."),)),
    ("code", (("user", "Explain what a closure is in JavaScript with a small example."),)),
    (
        "code",
        (
            (
                "user",
                f"Here is a CSV file:\n{_CSV}\nWrite Python code that prints the mean temperature per city.",
            ),
        ),
    ),
    ("code", (("user", "Write a Rust function that returns the n-th Fibonacci number iteratively."),)),
    ("code", (("user", "What is the time complexity of binary search, and why?"),)),
    (
        "system",
        (
            ("system", "You are a helpful assistant who answers in one short paragraph."),
            ("user", "Why do cats purr?"),
        ),
    ),
    (
        "system",
        (
            ("system", "You are a pirate. Stay in character."),
            ("user", "Tell me about your ship."),
        ),
    ),
    (
        "system",
        (
            ("system", "Answer only with valid JSON."),
            ("user", "Give me the name and population of the three largest cities in Japan."),
        ),
    ),
    (
        "system",
        (
            ("system", "You are a patient maths tutor. Explain step by step."),
            ("user", "Solve 3x + 7 = 22."),
        ),
    ),
    (
        "system",
        (
            ("system", "You are a concise technical writer."),
            ("user", "Explain what an API rate limit is."),
        ),
    ),
    (
        "multi-turn",
        (
            ("user", "I want to learn to cook. Where should I start?"),
            ("assistant", "Start with a few simple dishes: eggs, pasta and a basic soup."),
            ("user", "Okay, how do I make a basic soup?"),
        ),
    ),
    (
        "multi-turn",
        (
            ("user", "What's 12 squared?"),
            ("assistant", "12 squared is 144."),
            ("user", "And 13 squared?"),
        ),
    ),
    (
        "multi-turn",
        (
            ("system", "You are a friendly travel agent."),
            ("user", "I have a week off in May."),
            ("assistant", "Lovely! Do you prefer beaches, cities or mountains?"),
            ("user", "Mountains, but not too cold."),
        ),
    ),
    (
        "multi-turn",
        (
            ("user", "Write a limerick about a dolphin."),
            ("assistant", "There once was a dolphin named Lee, who swam every day in the sea."),
            ("user", "Finish it, please."),
        ),
    ),
    (
        "long",
        (
            (
                "user",
                f"Read this passage and answer the question.\n\n{_LONG_CONTEXT}\n\nWhere were the kontors?",
            ),
        ),
    ),
    (
        "long",
        (
            ("system", "You summarise texts faithfully."),
            ("user", f"Summarise in one sentence:\n\n{_LONG_CONTEXT}"),
        ),
    ),
    (
        "long",
        (("user", f"{_LONG_CONTEXT}\n\nWrite three quiz questions about this text, with answers."),),
    ),
)


# ---------------------------------------------------------------- generated chats
#
# The daemon's default: chats composed from the parts below (about 13 million combinations; per shape in
# `GENERATED.combinations`), drawn at random, so few chats repeat and no short list of them can be
# matched. The parts themselves are public: a node that scores a prompt's words against them can still
# recognise them (docs/verification.md measures this); an operator's private prompt file removes that.

_TOPICS = (
    "sourdough bread",
    "compound interest",
    "the Roman empire",
    "black holes",
    "photosynthesis",
    "a job interview",
    "my landlord",
    "learning the guitar",
    "climate change",
    "the stock market",
    "vaccines",
    "electric cars",
    "a wedding speech",
    "sleep hygiene",
    "meal prepping",
    "the Cold War",
    "machine learning",
    "a first marathon",
    "house plants",
    "budgeting",
    "the French subjunctive",
    "Shakespeare's sonnets",
    "volcanoes",
    "a road trip across Spain",
    "remote work",
    "caffeine",
    "the immune system",
    "chess openings",
    "a birthday party for a 6 year old",
    "minimalism",
    "public speaking",
    "the water cycle",
    "credit scores",
    "dog training",
    "the Renaissance",
    "solar panels",
    "intermittent fasting",
    "a resignation letter",
    "the Pythagorean theorem",
    "quantum computing",
    "negotiating a salary",
    "jazz",
    "knitting",
    "the Silk Road",
    "tides",
    "impostor syndrome",
    "bees",
    "an apology to a friend",
    "inflation",
    "the human heart",
    "origami",
    "procrastination",
    "Mars",
    "a small garden",
    "the printing press",
    "recycling plastic",
    "yoga",
    "the Olympic games",
    "earthquakes",
    "a cover letter for a nurse",
    "back pain",
    "Greek myths",
    "time zones",
    "a podcast idea",
    "mortgages",
    "coffee brewing",
    "the moon landing",
    "DNA",
    "a haunted house story",
    "email etiquette",
    "tax returns",
    "the Amazon rainforest",
    "rainbows",
    "a camping trip",
    "video game design",
    "the stoics",
    "antibiotics",
    "a toast for my parents",
    "composting",
    "cryptocurrency",
    "migraines",
    "World War I",
    "baking without eggs",
    "sharks",
    "a product launch",
    "the blockchain",
    "dinosaurs",
    "a meditation routine",
    "the metric system",
    "wine tasting",
    "a science fair project",
    "moving to Berlin",
    "the Great Wall of China",
    "poetry",
    "a lost cat poster",
    "nuclear energy",
    "ancient Egypt",
    "first aid for burns",
    "online privacy",
)
_QUESTIONS = (
    "What is {}?",
    "Can you explain {}?",
    "Tell me about {}.",
    "How does {} work?",
    "Why does {} matter?",
    "Give me three facts about {}.",
    "What should I know about {}?",
    "Explain {} to a beginner.",
    "Write a short poem about {}.",
    "What are common mistakes with {}?",
    "Help me with {}.",
    "Summarise {} in a few sentences.",
    "I'm curious about {}. Where do I start?",
    "What's the history of {}?",
    "Pros and cons of {}?",
    "Any tips for {}?",
    "Is {} worth it?",
    "Write a short story involving {}.",
    "Make a checklist for {}.",
    "Compare {} with something similar.",
    "What do experts disagree about regarding {}?",
    "Draft a short message about {}.",
    "Give me a fun fact about {}",
    "how do i get better at {}",
    "{} - explain please",
    "Write a tweet about {}.",
    "What are the basics of {}?",
    "ELI5: {}",
    "Quiz me on {}.",
    "What would a good first step be for {}?",
)
_OPENERS = ("", "", "", "Hi! ", "Hey, ", "Quick question: ", "Hello. ", "So, ", "Okay. ", "Please help. ")
_ASIDES = (
    "",
    "",
    "",
    "",
    " Keep it short.",
    " Use bullet points.",
    " I'm a complete beginner.",
    " Explain it simply.",
    " Be detailed.",
    " Answer in two sentences.",
    " Thanks!",
    " No jargon please.",
    " I have an exam tomorrow.",
    " It's for my kid.",
    " Give an example.",
    " Be honest.",
)
_CONTEXTS = (
    "",
    "",
    "",
    "",
    "I'm a teacher. ",
    "My friend and I argued about this. ",
    "I read something odd. ",
    "I have ten minutes. ",
    "English is not my first language. ",
    "For a school project: ",
    "I'm writing a blog post. ",
    "My boss asked me. ",
)
_SYSTEMS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer briefly.",
    "You are a friendly tutor who explains step by step.",
    "You are an expert who cites no sources.",
    "Answer in plain English for a general audience.",
    "You are a cheerful assistant.",
    "You write clearly and avoid jargon.",
    "You are a careful assistant; say when you are unsure.",
    "Reply in markdown.",
    "Keep answers under 100 words.",
)
_FOLLOW_UPS = (
    "Can you say more?",
    "Give me an example.",
    "Shorter please.",
    "Why is that?",
    "What about for a beginner?",
    "Thanks. And what's the most important part?",
    "Is that always true?",
    "Can you put that in a list?",
    "Hmm, I don't get it.",
    "Great, what next?",
)
_REPLIES = (
    "Sure. In short, it depends on a few things.",
    "Good question! There are several parts to it.",
    "Here is a quick overview.",
    "Happy to help. Let's start with the basics.",
    "It's a broad subject, so here is the core idea.",
)
_LANGUAGES = ("Python", "JavaScript", "Rust", "Go", "Java", "C", "TypeScript", "Bash", "SQL", "Ruby")
_CODE_TASKS = (
    "reverses a linked list",
    "parses a CSV file",
    "checks if a number is prime",
    "merges two sorted lists",
    "counts words in a text",
    "validates an email address",
    "computes a moving average",
    "finds duplicates in an array",
    "converts Celsius to Fahrenheit",
    "reads a JSON config file",
    "retries an HTTP request",
    "flattens a nested list",
    "formats a date",
    "implements a stack",
    "removes whitespace from a string",
    "sorts a dictionary by value",
    "generates a random password",
    "computes a factorial",
    "debounces a function",
    "walks a directory tree",
)
_CODE_ASKS = (
    "Write a {} function that {}.",
    "In {}, how do I write code that {}?",
    "Show me {} code that {}, with comments.",
    "What's the idiomatic {} way to write something that {}?",
    "My {} code that {} is slow. How would you write it?",
)
_FACTS = (
    "The town was founded in 1204 by merchants who traded salt and wool along the river.",
    "Its harbour froze every winter, so goods moved by sledge to the inland market.",
    "A fire in 1611 destroyed most of the wooden houses near the cathedral.",
    "The guilds rebuilt the centre in brick and paid for a new bridge.",
    "By 1700 the population had doubled, mostly through migration from the countryside.",
    "The railway arrived in 1862 and the old canal fell out of use.",
    "Textile mills employed a third of the workers until the 1950s.",
    "Today the old warehouses hold a university, a museum and many cafes.",
    "Tourism grew quickly after the old town became a heritage site.",
    "The local dialect borrows many words from the sailors who once crowded the docks.",
    "Every August a festival re-enacts the arrival of the first merchant fleet.",
    "The cathedral's tower is the tallest building for forty kilometres.",
)
_PASSAGE_TASKS = (
    "Summarise this:\n\n{}",
    "Read this and list the key dates:\n\n{}",
    "{}\n\nWrite two quiz questions about the text above.",
    "What happened after the fire?\n\n{}",
    "Rewrite this for a ten year old:\n\n{}",
)


def _single(topic: str, question: str, opener: str, aside: str, context: str = "") -> Chat:
    return (("user", opener + context + question.format(topic) + aside),)


class GeneratedChats(Sequence[tuple[str, Chat]]):
    """Every chat the parts above compose, as a sequence indexed without building it, so that
    `rng.choice` draws one: a shape by its weight (in `_SHAPES`, like the built-in list's mix), then each
    of its parts uniformly. Each shape owns a block of `weight * lcm(shape sizes)` indices; an index within
    a block, reduced modulo the shape's size, is read as mixed-radix digits, one per part."""

    _SHAPES: tuple[tuple[str, int, tuple[tuple, ...]], ...] = (
        ("chat", 40, (_TOPICS, _QUESTIONS, _OPENERS, _ASIDES, _CONTEXTS)),
        ("system", 15, (_SYSTEMS, _TOPICS, _QUESTIONS, _OPENERS, _ASIDES)),
        ("multi-turn", 15, (_TOPICS, _QUESTIONS, _REPLIES, _FOLLOW_UPS, _ASIDES)),
        ("code", 20, (_LANGUAGES, _CODE_TASKS, _CODE_ASKS, _OPENERS, _ASIDES)),
        ("long", 10, (_PASSAGE_TASKS, _FACTS, _FACTS, _FACTS, _FACTS)),
    )

    def __init__(self) -> None:
        self.combinations = tuple(math.prod(len(part) for part in parts) for *_, parts in self._SHAPES)
        self._unit = math.lcm(*self.combinations)
        self._blocks = tuple(weight * self._unit for _, weight, _ in self._SHAPES)

    def __len__(self) -> int:
        return sum(self._blocks)

    @property
    def parts(self) -> frozenset[str]:
        """Every text part the chats are made of: public, so a node can score a prompt against them
        (`tests/bench/bench_indistinguishability.py` does, as the attacker)."""
        return frozenset(text for *_, parts in self._SHAPES for part in parts for text in part)

    def __getitem__(self, index):
        if isinstance(index, slice):
            raise TypeError("GeneratedChats is drawn from one index at a time")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        for (kind, _, parts), block, size in zip(self._SHAPES, self._blocks, self.combinations, strict=True):
            if index < block:
                return kind, _compose(kind, _digits(index % size, parts))
            index -= block
        raise AssertionError("unreachable")


def _digits(index: int, parts: tuple[tuple, ...]) -> list:
    picked = []
    for part in parts:
        index, digit = divmod(index, len(part))
        picked.append(part[digit])
    return picked


def _compose(kind: str, picked: list) -> Chat:
    if kind == "chat":
        return _single(*picked)
    if kind == "system":
        system, *rest = picked
        return (("system", system), *_single(*rest))
    if kind == "multi-turn":
        topic, question, reply, follow_up, aside = picked
        return (("user", question.format(topic)), ("assistant", reply), ("user", follow_up + aside))
    if kind == "code":
        language, task, ask, opener, aside = picked
        return (("user", opener + ask.format(language, task) + aside),)
    task, *facts = picked
    passage = " ".join(dict.fromkeys(facts))  # a sentence drawn twice appears once
    return (("user", task.format(passage)),)


GENERATED = GeneratedChats()
"""The built-in challenge prompts (`challenges.draw_challenge`'s default)."""
