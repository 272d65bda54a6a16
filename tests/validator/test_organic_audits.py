"""Organic audits between separate processes on Anvil, with the default settings: a node that answers every
validator challenge with the genuine model and cheats on its users only (a perfect challenge detector) is
struck by two validators on the answers its users shared, and banned.

Processes: a relay, Anvil, the cheating `dolphin node` (`tests.validator.cheating_node selective`) and the
dev chain's three genesis validators (`dolphin validator`, default sampling and audit settings). The users
are a light client in this test's process, sharing at the default rate (`pool.audits.SharingSettings`).
"""

import pytest
import trio

from pool import NoNodeAvailable
from pool.audits import SharingSettings
from pool.errors import AllAttemptsFailed
from pool.light import LightConfig, open_light_client
from tests.validator.processes import chain_node, chain_validator, metric, started_processes

pytestmark = [pytest.mark.process, pytest.mark.chain, pytest.mark.slow]

USERS = "Dear assistant,"  # how the cheater tells its users from the validators (an oracle, the worst case)
MAX_REQUESTS = 400
TOPICS = ("rivers", "prime numbers", "bread", "the moon", "chess", "bees", "glass", "maps", "rain", "salt")


@pytest.mark.trio
async def test_a_node_cheating_only_on_its_users_is_struck_by_their_shared_answers(
    tmp_path, relay, tiny_model_dir
):
    outcome = await selective_cheater_run(tmp_path, relay, tiny_model_dir, SharingSettings())
    # The genuine model answered every challenge: only the users' shared answers failed.
    assert outcome["challenges_failed"] == 0
    assert outcome["shared_answers_failed"] >= 2 and outcome["validators_striking"] >= 2
    assert outcome["banned"]
    print(f"selective cheater at the default settings: {outcome}")


async def selective_cheater_run(tmp_path, relay, model_dir, sharing: SharingSettings) -> dict:
    """The scenario (module docstring) with users sharing at `sharing`: how many user requests the
    cheater served until every validator banned it, and what the validators saw."""
    from chain.client import ChainClient
    from chain.testing import open_deployed_chain
    from node.registration import register_node

    with open_deployed_chain(tmp_path / "chain") as chain, started_processes() as processes:
        operator = ChainClient(chain.rpc_url, chain.deployment, chain.keys[4])
        node_dir = tmp_path / "cheat"
        await trio.to_thread.run_sync(register_node, node_dir, operator)
        cheat = chain_node(
            node_dir,
            model_dir,
            relay,
            chain,
            ("tests.validator.cheating_node", "selective", USERS, "--", "-v", "node"),
        )
        processes.append(cheat)
        validators = []
        for index in (1, 2, 3):  # the dev chain's genesis validator set
            process = chain_validator(tmp_path / f"validator-{index}", chain, index, model_dir, relay)
            processes.append(process)
            validators.append(process)
        for process in processes:
            await process.wait_ready(240)
        config = LightConfig(
            bootstrap=(relay.addr,),
            chain_rpc_url=chain.rpc_url,
            chain_deployment=chain.path,
            chain_refresh_s=2.0,
            sharing=sharing,
        )
        model_id = (await trio.to_thread.run_sync(_model_id, model_dir)).hex()
        served, banned = 0, False
        async with open_light_client(config) as client:
            model = await client.watcher.resolve(model_id, timeout=60)
            await client.watcher.watch(model)
            with trio.move_on_after(600):
                while served < MAX_REQUESTS and not banned:
                    topic = TOPICS[served % len(TOPICS)]
                    prompt = f"{USERS} tell me one thing about {topic} ({served})."
                    try:
                        await client.ask(model, [("user", prompt)], max_tokens=12)
                    except (NoNodeAvailable, AllAttemptsFailed):
                        break  # banned: the router no longer sends users to it
                    served += 1
                    if served % 10 == 0:
                        banned = await trio.to_thread.run_sync(_banned_everywhere, validators)
                while not banned:
                    banned = await trio.to_thread.run_sync(_banned_everywhere, validators)
                    await trio.sleep(1)
            sharer = client.sharer
        return {
            "audit_rate": sharing.rate,
            "served_before_ban": served,
            "banned": banned,
            "shared": sharer.shared if sharer is not None else 0,
            "challenges_failed": sum(
                metric(v, "dolphin_validator_challenges_total", outcome="failed") for v in validators
            ),
            "shared_answers_failed": sum(
                metric(v, "dolphin_validator_shared_answers_total", outcome="failed") for v in validators
            ),
            "validators_striking": sum(
                metric(v, "dolphin_validator_strikes_published_total") >= 1 for v in validators
            ),
        }


def _model_id(model_dir) -> bytes:
    from node.models import load_manifest

    return load_manifest(model_dir).model_id()


def _banned_everywhere(validators) -> bool:
    return all(
        metric(v, "dolphin_validator_bans_total") + metric(v, "dolphin_validator_nodes", status="banned") >= 1
        for v in validators
    )
