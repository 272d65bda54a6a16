"""Every kind of cheat, struck by two validators, banned, and — its operator bonded — slashed on a local
chain by a quorum of the genesis validator set, the reporting validator paid its cut as bonded stake.

Validators run in this process (gossip through `LocalBus`, the real topic validators); the chain, the
contracts and every transaction are real (Anvil)."""

import contextlib
import dataclasses

import pytest
import trio
import trio_asyncio

from chain.client import ChainClient
from protocols.eth import keccak256
from protocols.keys import Identity, peer_id_from_public_key
from tests.validator.cheats import (
    FabricatingEngine,
    PromptAlteringEngine,
    TruncatingEngine,
    inject_system_prompt,
    modified_engine,
)
from validator.chain import SlashingChain
from validator.challenges import Challenge
from validator.service import Validator
from validator.state import open_state
from validator.testing import LocalBus, NodeKeys, answer_in_process, attestation_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.trio, pytest.mark.chain]

POD = 10**18
LONG = Challenge("chat", (("user", "Tell me about the sea."),), max_tokens=48)
SAMPLED = Challenge("code", (("user", "Write a bash one-liner."),), max_tokens=48, temperature=0.7, seed=9)
CHEATS = (
    "substituted model",
    "perturbed weights",
    "quantized weights",
    "fabricated tokens",
    "system prompt",
    "truncated",
    "speed lie",
)


@pytest.fixture(scope="module")
def deployed(module_deployed_chain):
    """A deployed dev chain; dev key 4 is an operator with 300,000 POD bonded."""
    chain = module_deployed_chain
    operator = ChainClient(chain.rpc_url, chain.deployment, chain.keys[4])
    operator.stake(300_000 * POD)
    operator.bond()
    yield chain, operator


@contextlib.asynccontextmanager
async def _genesis_validators(tmp_path, chain, reference, thresholds):
    """Dev keys 1, 2 and 3 (the genesis set) as validators with the chain, on one bus."""
    bus = LocalBus()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(trio_asyncio.open_loop())
        validators = []
        for index in (1, 2, 3):
            client = ChainClient(chain.rpc_url, chain.deployment, chain.keys[index])
            slashing = SlashingChain(client)
            state = await stack.enter_async_context(open_state(tmp_path / f"validator-{index}"))
            peer = Identity.generate()
            from protocols.eth import EthAccount

            validator = Validator(
                peer=peer,
                wallet=EthAccount(bytes.fromhex(chain.keys[index].removeprefix("0x"))),
                domain=slashing.domain(),
                reference=reference,
                thresholds=thresholds,
                state=state,
                publish=bus.publisher(peer),
                validators=await trio.to_thread.run_sync(slashing.quorum_rule),
                chain=slashing,
                decision_settle_s=0,
            )
            await validator.load()
            bus.join(validator)
            validators.append(validator)
        yield validators


def _cheat(kind, tiny_model_dir, honest, reference):
    """(engine, whether to close it, how much faster than it is its attestation claims)."""
    if kind == "substituted model":
        return modified_engine(tiny_model_dir, "other-seed", max_batch=4), True, 1
    if kind == "perturbed weights":
        return modified_engine(tiny_model_dir, "perturb", 1e-3, max_batch=4), True, 1
    if kind == "quantized weights":
        return modified_engine(tiny_model_dir, "fp16", max_batch=4), True, 1
    if kind == "fabricated tokens":
        return FabricatingEngine(honest, vocabulary=reference.replay.vocab_size), False, 1
    if kind == "system prompt":
        return PromptAlteringEngine(honest, inject_system_prompt("You are a helpful assistant.")), False, 1
    if kind == "truncated":
        return TruncatingEngine(honest, keep=6, eos_id=min(reference.eos_ids)), False, 1
    return honest, False, 50  # speed lie: serves honestly, claims fifty times its speed


@pytest.mark.parametrize("kind", CHEATS)
async def test_each_cheat_is_struck_banned_and_slashed(
    tmp_path, deployed, tiny_model_dir, honest_engine, reference, thresholds, kind
):
    chain, operator = deployed
    keys = NodeKeys()
    peer_hash = keccak256(peer_id_from_public_key(keys.identity.public_key))
    binding = await trio.to_thread.run_sync(operator.register_node, peer_hash)
    engine, own, factor = await trio.to_thread.run_sync(
        _cheat, kind, tiny_model_dir, honest_engine, reference
    )
    measured = 0.0
    if factor > 1:  # the node's real per-stream speed, measured on an honest answer first
        answer = await answer_in_process(honest_engine, LONG, model=reference.model_id, keys=keys)
        receipt = answer.receipt
        measured = (receipt.tokens_out - 1) * 1000 / max(1, receipt.duration_ms - receipt.first_token_ms)
    attestation = attestation_for(keys, reference.model_id, decode_tps=max(measured * factor, 1.0))
    before = await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address)
    try:
        async with _genesis_validators(tmp_path, chain, reference, thresholds) as (first, second, third):
            challenges = [LONG, SAMPLED, dataclasses.replace(LONG, max_tokens=40)] * 3
            for validator in (first, second):
                validator.node_seen(keys.identity.public_key, binding.operator)
                for challenge in challenges:  # until it strikes (a benchmark check takes several answers)
                    answer = await answer_in_process(
                        engine, challenge, model=reference.model_id, keys=keys, attestation=attestation
                    )
                    await validator.judge(answer)
                    struck = validator.book.strikes(keys.identity.public_key, validator.epoch)
                    if any(strike.validator == validator.address for strike in struck):
                        break
            node = keys.identity.public_key
            assert [v.status(node) for v in (first, second, third)] == ["banned"] * 3
            ban = third._bans[node].message
    finally:
        if own:
            await engine.aclose()
    events = await trio.to_thread.run_sync(operator.events, "Slashing", "StrikeExecuted")
    (event,) = [e for e in events if e["args"]["evidenceHash"] == ban.evidence_hash()]
    assert event["args"]["offender"] == operator.address
    after = await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address)
    assert event["args"]["shares"] == before // 2 and after == before - event["args"]["shares"]
    reporter = event["args"]["reporter"]
    # The validator of the notice's first strike in canonical order (epoch, then signature).
    assert reporter.lower() == "0x" + ban.strikes[0].validator.hex()
    assert event["args"]["reporterShares"] > 0
    bonded = await trio.to_thread.run_sync(operator.call, "Bonding", "activeBondOf", reporter)
    assert bonded >= event["args"]["reporterShares"]  # paid as bonded stake: it is a validator
