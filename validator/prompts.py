"""The prompts validators' sampled requests are drawn from: a varied mix shaped like client traffic.

Chat questions, code, multi-turn conversations, system prompts, short and long. They are the validator's
own text, so they may travel in strike evidence (a user's prompt never does). Each entry is a kind (for
statistics) and the chat as (role, content) pairs; `challenges.draw_challenge` adds sampling settings.
"""

from __future__ import annotations

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
