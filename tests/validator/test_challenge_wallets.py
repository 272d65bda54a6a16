"""Challenges pay like many users, not like one validator: many wallets, one per challenge host, caps that
differ, funding amounts copied from users' balances; and their prompts come from a large generated space,
not a short public list."""

import random
import stat
from pathlib import Path

import pytest
import trio
import trio_asyncio

from node.credits import PaymentPolicy
from node.inference import InferenceService, ServiceLimits
from p2p.testing import open_host_group
from pool import NodeContact
from pool.light import CreditWallet
from protocols import testing as pt
from protocols.eth import EthAccount
from protocols.ids import HEARTBEAT_PROTOCOL, INFERENCE_PROTOCOL
from protocols.keys import EncryptionKeyPair, Identity
from validator.challenge_wallets import (
    challenge_accounts,
    open_challenge_wallets,
    pick_wallet,
    plan_funding,
)
from validator.challenges import Challenge, draw_challenge, load_prompts
from validator.prompts import GENERATED, PROMPTS
from validator.sampler import ChallengeSender

SEED = bytes(range(32))


@pytest.mark.unit
def test_wallets_derive_from_one_seed_whose_own_key_stays_wallet_zero():
    accounts = challenge_accounts(SEED, 16)
    assert accounts[0].address == EthAccount(SEED).address  # a wallet funded before stays in use
    assert len({a.address for a in accounts}) == 16
    assert [a.address for a in challenge_accounts(SEED, 16)] == [a.address for a in accounts]
    assert challenge_accounts(bytes(32 - 1) + b"\1", 2)[1].address != accounts[1].address


@pytest.mark.unit
def test_the_seed_file_is_written_once_private_and_read_back(tmp_path: Path):
    path = tmp_path / "challenge.key"
    first = open_challenge_wallets(path, 4, pt.TEST_DOMAIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = open_challenge_wallets(path, 4, pt.TEST_DOMAIN)
    assert [w.account.address for w in again] == [w.account.address for w in first]
    assert all(w.available is None for w in first)  # unknown until read from the chain


@pytest.mark.unit
def test_a_host_pays_from_a_random_wallet_with_credit():
    wallets = [CreditWallet(a, pt.TEST_DOMAIN, available=0) for a in challenge_accounts(SEED, 8)]
    for wallet, credit in zip(wallets[2:], (10**6, 3 * 10**5, 8 * 10**7, 42, 10**5, 7), strict=True):
        wallet.available = credit
    rng = random.Random(1)
    picked = {pick_wallet(wallets, rng).account.address for _ in range(400)}
    assert picked == {w.account.address for w in wallets[2:]}  # every funded one, no empty one
    for wallet in wallets:
        wallet.available = 0
    assert pick_wallet(wallets, rng) in wallets  # nothing funded: unpaid, like any empty wallet
    assert pick_wallet([], rng) is None


@pytest.mark.unit
def test_funding_copies_users_balances_within_budget_at_staggered_times():
    addresses = [a.address for a in challenge_accounts(SEED, 16)]
    users = [int(10 ** random.Random(n).uniform(5, 8)) for n in range(50)]
    plan = plan_funding(random.Random(3), addresses, users, budget=10**12, window_s=86400)
    assert {d.address for d in plan} == set(addresses)
    assert [d.at_s for d in plan] == sorted(d.at_s for d in plan)
    assert all(0 <= d.at_s <= 86400 for d in plan)
    assert all(any(0.85 * u <= d.amount <= 1.15 * u for u in users) for d in plan)
    assert len({d.amount for d in plan}) == 16  # no single cap marks them as a set
    tight = plan_funding(random.Random(3), addresses, users, budget=10**6, window_s=60)
    assert sum(d.amount for d in tight) <= 10**6
    with pytest.raises(Exception, match="no user balances"):
        plan_funding(random.Random(3), addresses, [], budget=1, window_s=1)


@pytest.mark.unit
def test_challenge_prompts_come_from_millions_of_chats_not_the_public_list():
    assert len(PROMPTS) < 100 and sum(GENERATED.combinations) > 10**7
    rng = random.Random(5)
    drawn = [draw_challenge(rng) for _ in range(2000)]
    chats = [c.messages for c in drawn]
    public = {chat for _, chat in PROMPTS}
    assert not public & set(chats)
    assert len(set(chats)) > 1950
    kinds = {c.kind for c in drawn}
    assert kinds == {"chat", "system", "multi-turn", "code", "long"}
    for chat in chats:  # each is a chat an operator's prompt file could hold
        assert chat[-1][0] == "user" and all(content for _, content in chat)


@pytest.mark.unit
def test_generated_chats_are_valid_prompt_file_lines(tmp_path: Path):
    import json

    rng = random.Random(6)
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(rng.choice(GENERATED)[1]) for _ in range(50)))
    assert len(load_prompts(path)) == 50


@pytest.mark.integration
@pytest.mark.trio
async def test_each_challenge_host_pays_from_one_wallet_and_hosts_spread_over_wallets(
    tmp_path, honest_engine
):
    """Over libp2p to a real node: every challenge of one throwaway host carries that host's one wallet,
    and the hosts' wallets, addresses and caps differ, like many users rather than one payer."""
    credits = (10**5, 4 * 10**6, 7 * 10**7)
    wallets = [
        CreditWallet(account, pt.TEST_DOMAIN, available=credit)
        for account, credit in zip(challenge_accounts(SEED, 3), credits, strict=True)
    ]
    keys = EncryptionKeyPair.generate()
    async with trio_asyncio.open_loop(), open_host_group(tmp_path, 1) as (node_host,):
        identity = Identity(node_host.signing_seed())
        model_id = honest_engine.loaded.manifest.model_id()
        service = InferenceService(
            identity=identity,
            encryption_keys=lambda: [keys],
            engine=honest_engine,
            model_id=model_id,
            limits=ServiceLimits(max_new_tokens=2),
            payments=PaymentPolicy(credit_domain=pt.TEST_DOMAIN),
        )
        seen: list[tuple[str, str]] = []  # (what, peer) in the order the node saw them

        async def heartbeat(stream) -> None:  # a node with no heartbeat to give: the ask goes on
            seen.append(("heartbeat", stream.peer_id))
            await stream.reset()

        async def inference(stream) -> None:
            seen.append(("inference", stream.peer_id))
            await service.handle(stream)

        node_host.set_stream_handler(HEARTBEAT_PROTOCOL, heartbeat)
        node_host.set_stream_handler(INFERENCE_PROTOCOL, inference)
        contact = NodeContact(node_host.peer_id, identity.public_key, keys.public_key, model_id)
        sender = ChallengeSender(
            tmp_path, (node_host.listen_addrs()[0],), per_host=2, wallets=wallets, rng=random.Random(2)
        )
        challenge = Challenge(kind="chat", messages=(("user", "Hi"),), max_tokens=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(sender.serve)
            answers = [await sender.challenge(contact, challenge, attestation=None) for _ in range(12)]
            nursery.cancel_scope.cancel()
    payers_by_session: dict[bytes, set[tuple[bytes, int]]] = {}
    for answer in answers:
        credit = answer.request.credit
        assert credit is not None
        payers_by_session.setdefault(credit.session_key, set()).add((credit.client, credit.max_credits))
    assert sender.hosts_opened == 6 and len(payers_by_session) == 6
    # Each host asked for the node's heartbeat once, before its first request, as a user's cold client does.
    first_asks: dict[str, str] = {}
    for what, peer in seen:
        first_asks.setdefault(peer, what)
    assert list(first_asks.values()) == ["heartbeat"] * 6
    assert [what for what, _ in seen].count("heartbeat") == 6
    assert all(len(payers) == 1 for payers in payers_by_session.values())
    used = set().union(*payers_by_session.values())
    assert len(used) >= 2
    assert used <= {(w.account.address, w.available) for w in wallets}  # each cap its wallet's credit
