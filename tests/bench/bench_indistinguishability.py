"""indistinguishability: can a node tell validators' challenges from the project's clients' requests?

A real node (the inference service over libp2p on 127.0.0.1, the tiny model, answers capped at 4 tokens
since only the requests matter) logs, per request, everything it observes that could tell who sent it:
whether the session key is the stream's peer, how many requests that peer sent before, the credit
authorisation (present, nonce size, expiry from now, cap), the sampling settings, the chat's shape and
length, how many requests its payer paid for so far, whether the prompt is one of the 34 public
`PROMPTS`, and the share of its words found in the built-in generator's public parts (a node can compute
both). Senders:
- `dolphin ask`-like users: a fresh light-client host per question, signing with its own key, paying with
  one of 20 users' `CreditWallet`s (70% at the command's defaults, 30% with their own settings);
- gateway-like users: one long-lived light-client host for all, paying from its one wallet, OpenAI
  clients' settings (60% the SDK's defaults, 40% their own);
- validators' challenges: `validator.sampler.ChallengeSender` with `draw_challenge`, as the daemon sends
  them, over the daemon's 16 challenge wallets, funded by `plan_funding` from 50 other users' balances
  (users' balances are log-uniform between 0.1 and 100 lUSD); once with the built-in generated prompts
  (the default) and once with an operator's private prompt file.
Users' prompts come from the bench's own generator of varied chats; the private challenge prompts from the
same generator with another seed — the assumption that an operator's private prompts read like users' is
the one that row rests on. Then the best classifiers we have (logistic regression on standardised
features, and a random forest) are cross-validated (5 folds) on challenges vs users, grouped by payer (a
payer's requests are all in one fold: the node has not yet learned which wallets are challengers') and, for
comparison, in plain stratified folds (it has: the classifier may memorise a wallet's cap); ROC AUC, the
same without the prompt-text features, and the AUC of each feature alone, so a leaking field shows. Goal:
AUC <= 0.6. Not observed here: time of day and inter-arrival times, the route (relay or direct), the
payer's on-chain history (who funded it), and credit caps falling as debits land; see
docs/verification.md.
"""

from __future__ import annotations

import contextvars
import math
import random
import re
import tempfile
import time
from pathlib import Path

import trio
import trio_asyncio

from cli.demo import prepare_model
from node.credits import PaymentPolicy
from node.engines.transformers import TransformersEngine
from node.inference import InferenceService, ServiceLimits
from p2p import HostConfig, open_host
from p2p.testing import open_host_group
from pool import NodeContact, complete
from pool.light import CreditWallet
from protocols import testing as pt
from protocols.ids import INFERENCE_PROTOCOL
from protocols.keys import EncryptionKeyPair, Identity, peer_id_from_public_key, peer_id_to_text
from validator.challenge_wallets import challenge_accounts, plan_funding
from validator.challenges import draw_challenge
from validator.prompts import GENERATED, PROMPTS
from validator.sampler import ChallengeSender

MODELS_DIR = Path(".devdata/models")
PER_SIDE = 200
FEATURES = (
    "key_is_peer",
    "peer_requests",
    "paid",
    "nonce_bits",
    "expiry_s",
    "cap_log10",
    "temperature",
    "top_p",
    "seeded",
    "stops",
    "max_tokens",
    "top_logprobs",
    "messages",
    "has_system",
    "prompt_chars",
    "payer_requests",
    "public_prompt",
    "generator_words",
)
PROMPT_TEXT_FEATURES = ("public_prompt", "generator_words")
CHALLENGE_WALLETS = 16
_PUBLIC = {messages for _, messages in PROMPTS}
_WORD = re.compile(r"[a-z']+")
_GENERATOR_WORDS = frozenset(_WORD.findall(" ".join(GENERATED.parts).lower()))


def generator_words(messages: tuple[tuple[str, str], ...]) -> float:
    """The share of a chat's words found in the built-in generator's public parts: 1.0 for every chat it
    makes; what a node that knows the generator computes."""
    words = _WORD.findall(" ".join(content for _, content in messages).lower())
    return sum(word in _GENERATOR_WORDS for word in words) / max(1, len(words))


_peer = contextvars.ContextVar[str]("peer")

SUBJECTS = (
    "my sourdough starter",
    "a cover letter",
    "the French revolution",
    "binary search",
    "a birthday poem",
    "tax deductions for freelancers",
    "my cat's diet",
    "a SQL query joining two tables",
    "jet lag",
    "the plot of Hamlet",
    "a marathon training plan",
    "quantum entanglement",
    "a regex for emails",
    "renting vs buying",
    "a bedtime story about a fox",
    "Kubernetes pods",
    "learning Spanish",
    "compost",
)
ASKS = (
    "Can you help me with {}?",
    "Explain {} like I'm five.",
    "Write a short paragraph about {}.",
    "What are the pros and cons of {}?",
    "I need three tips about {}.",
    "Summarise what you know on {}.",
    "{}: where do I start?",
    "Give me a step-by-step guide to {}.",
    "Quick question about {} - is it hard?",
)
SYSTEMS = ("You are a helpful assistant.", "Answer briefly.", "You are a patient tutor.")


def user_chat(rng: random.Random) -> tuple[tuple[str, str], ...]:
    """A user's chat: one to three turns, a system prompt now and then, varied lengths."""
    chat: list[tuple[str, str]] = []
    if rng.random() < 0.25:
        chat.append(("system", rng.choice(SYSTEMS)))
    turns = rng.choice((1, 1, 1, 2, 3))
    for turn in range(turns):
        text = rng.choice(ASKS).format(rng.choice(SUBJECTS))
        if rng.random() < 0.3:
            text += " " + " ".join(rng.choice(SUBJECTS) for _ in range(rng.randrange(2, 12)))
        chat.append(("user", text))
        if turn < turns - 1:
            chat.append(("assistant", "Sure. " + rng.choice(ASKS).format(rng.choice(SUBJECTS))))
    return tuple(chat)


def ask_options(rng: random.Random) -> dict:
    if rng.random() < 0.7:
        return {"max_tokens": 256}
    return {
        "max_tokens": rng.choice((64, 128, 256)),
        "temperature": rng.choice((0.0, 0.7, 1.0)),
        "seed": rng.randrange(1 << 32) if rng.random() < 0.3 else None,
    }


def gateway_options(rng: random.Random) -> dict:
    if rng.random() < 0.6:
        return {"max_tokens": 256, "temperature": 1.0}
    return {
        "max_tokens": rng.choice((32, 64, 128, 256)),
        "temperature": rng.choice((0.0, 0.7, 1.0)),
        "top_p": rng.choice((1.0, 1.0, 0.95, 0.9)),
        "stop": rng.choice(((), (), ("\n\n",))),
    }


class _ObservingService(InferenceService):
    """The node's inference service, logging what it observes of each request it admits."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.observed: list[dict] = []
        self._per_peer: dict[str, int] = {}
        self._per_payer: dict[bytes, int] = {}
        self.label = ""

    async def handle(self, stream) -> None:  # type: ignore[no-untyped-def]
        _peer.set(str(stream.peer_id))
        await super().handle(stream)

    async def _admit(self, exchange, engine):  # type: ignore[no-untyped-def]
        peer = _peer.get()
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        request, credit = exchange.request, exchange.request.credit
        messages = tuple((m.role, m.content) for m in request.messages)
        payer = credit.client if credit else b""
        self._per_payer[payer] = self._per_payer.get(payer, 0) + 1
        self.observed.append(
            {
                "label": self.label,
                "payer": payer.hex(),
                "key_is_peer": peer_id_to_text(peer_id_from_public_key(exchange.signed_request.signer))
                == peer,
                "peer_requests": self._per_peer[peer],
                "paid": credit is not None,
                "nonce_bits": credit.nonce.bit_length() if credit else 0,
                "expiry_s": credit.expiry - time.time() if credit else 0,
                "cap_log10": math.log10(credit.max_credits + 1) if credit else 0,
                "temperature": request.temperature_milli / 1000,
                "top_p": request.top_p_milli / 1000,
                "seeded": request.seed is not None,
                "stops": len(request.stop),
                "max_tokens": request.max_tokens,
                "top_logprobs": request.top_logprobs,
                "messages": len(messages),
                "has_system": messages[0][0] == "system",
                "prompt_chars": sum(len(c) for _, c in messages),
                "payer_requests": self._per_payer[payer],
                "public_prompt": messages in _PUBLIC,
                "generator_words": generator_words(messages),
            }
        )
        return await super()._admit(exchange, engine)


def user_balance(rng: random.Random) -> int:
    """A user's credit: log-uniform from 0.1 to 100 lUSD (6 decimals)."""
    return int(10 ** rng.uniform(5, 8))


def _wallet(n: int, rng: random.Random) -> CreditWallet:
    return CreditWallet(pt.eth_account(n), pt.TEST_DOMAIN, available=user_balance(rng))


def _challenge_wallets(rng: random.Random) -> list[CreditWallet]:
    """The daemon's challenge wallets, funded as `plan_funding` plans from 50 other users' balances."""
    accounts = challenge_accounts(rng.randbytes(32), CHALLENGE_WALLETS)
    observed = [user_balance(rng) for _ in range(50)]
    plan = plan_funding(rng, [a.address for a in accounts], observed, budget=10**12, window_s=86400)
    funded = {deposit.address: deposit.amount for deposit in plan}
    return [CreditWallet(a, pt.TEST_DOMAIN, available=funded[a.address]) for a in accounts]


async def _collect(model_dir: Path, private_prompts: bool) -> list[dict]:
    engine = await trio.to_thread.run_sync(lambda: TransformersEngine.open(model_dir, max_batch=8))
    rng = random.Random(7 if private_prompts else 8)
    prompts = GENERATED
    if private_prompts:
        operator = random.Random(99)
        prompts = tuple(("operator", user_chat(operator)) for _ in range(500))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with trio_asyncio.open_loop(), open_host_group(Path(tmp), 1) as (node_host,):
                keys = EncryptionKeyPair.generate()
                identity = Identity(node_host.signing_seed())
                model_id = engine.loaded.manifest.model_id()
                service = _ObservingService(
                    identity=identity,
                    encryption_keys=lambda: [keys],
                    engine=engine,
                    model_id=model_id,
                    # Only what the node observes matters here, not whether receipts come back signed
                    # (a service without a ledger keeps none): no payer is refused for owing them.
                    limits=ServiceLimits(max_new_tokens=4, unacknowledged_budget=10**6),
                    payments=PaymentPolicy(credit_domain=pt.TEST_DOMAIN),
                )
                node_host.set_stream_handler(INFERENCE_PROTOCOL, service.handle)
                contact = NodeContact(node_host.peer_id, identity.public_key, keys.public_key, model_id)
                bootstrap = (node_host.listen_addrs()[0],)
                service.label = "user"
                ask_wallets = [_wallet(10 + n, rng) for n in range(20)]
                for n in range(PER_SIDE // 2):  # `dolphin ask`: one host, one key, one question
                    config = HostConfig.light_client(Path(tmp) / "ask", bootstrap=bootstrap, listen=())
                    async with open_host(config) as host:
                        session = Identity(host.signing_seed())
                        wallet = ask_wallets[n % 20]
                        await complete(
                            host,
                            contact,
                            user_chat(rng),
                            identity=session,
                            credit=wallet.authorise(session.public_key, model_id),
                            **ask_options(rng),
                        )
                gateway = HostConfig.light_client(Path(tmp) / "gateway", bootstrap=bootstrap, listen=())
                async with open_host(gateway) as host:
                    session, wallet = Identity(host.signing_seed()), _wallet(40, rng)
                    for _ in range(PER_SIDE // 2):
                        await complete(
                            host,
                            contact,
                            user_chat(rng),
                            identity=session,
                            credit=wallet.authorise(session.public_key, model_id),
                            **gateway_options(rng),
                        )
                service.label = "challenge"
                sender = ChallengeSender(
                    Path(tmp), bootstrap, wallets=_challenge_wallets(rng), rng=random.Random(rng.random())
                )
                async with trio.open_nursery() as nursery:
                    await nursery.start(sender.serve)
                    for _ in range(PER_SIDE):
                        await sender.challenge(
                            contact, draw_challenge(rng, prompts=prompts), attestation=None
                        )
                    nursery.cancel_scope.cancel()
                return service.observed
    finally:
        engine.close()


def _classify(rows: list[dict]) -> dict:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([row["label"] == "challenge" for row in rows])
    payers = np.array([row["payer"] for row in rows])
    models = {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "random_forest": RandomForestClassifier(n_estimators=300, random_state=0),
    }

    def auc(features: tuple[str, ...], grouped: bool) -> dict[str, float]:
        x = np.array([[float(row[name]) for name in features] for row in rows])
        if grouped:
            folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
            splits = list(folds.split(x, y, groups=payers))
        else:
            splits = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(x, y))
        return {
            name: round(float(cross_val_score(model, x, y, cv=splits, scoring="roc_auc").mean()), 3)
            for name, model in models.items()
        }

    without_text = tuple(name for name in FEATURES if name not in PROMPT_TEXT_FEATURES)
    result: dict = {
        "grouped_by_payer": auc(FEATURES, grouped=True),
        "grouped_by_payer_without_prompt_text": auc(without_text, grouped=True),
        "random_folds": auc(FEATURES, grouped=False),
        "random_folds_without_prompt_text": auc(without_text, grouped=False),
    }
    single = {}
    for name in FEATURES:
        column = np.array([float(row[name]) for row in rows])
        score = roc_auc_score(y, column) if len(set(column)) > 1 else 0.5
        single[name] = round(max(score, 1 - score), 3)
    result["single_feature_auc"] = dict(sorted(single.items(), key=lambda item: -item[1]))
    result["challenges"], result["user_requests"] = int(y.sum()), int((~y).sum())
    result["payers"] = {
        "challenges": len(set(payers[y])),
        "users": len(set(payers[~y])),
    }
    return result


def run(out: Path) -> dict:
    model_dir = prepare_model("tiny", MODELS_DIR)
    results = {}
    for private in (False, True):
        rows = trio.run(_collect, model_dir, private)
        results["private_prompts" if private else "public_prompts"] = _classify(rows)
    return results
