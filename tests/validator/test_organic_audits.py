"""Organic audits between separate processes on Anvil, with the default settings: a node that answers every
validator challenge with the genuine model and cheats on its users only (a perfect challenge detector) is
struck by two validators on the answers its users shared, and banned.

Processes: a relay, Anvil, the cheating `dolphin node` (`tests.validator.cheating_node selective`) and the
dev chain's three genesis validators (`dolphin validator`, default sampling and audit settings). The users
are a light client in this test's process, sharing at the default rate (`pool.audits.SharingSettings`).
"""

import os

import httpx
import pytest
import trio

from node.testing import node_process
from p2p.testing import relay_process
from pool import NoNodeAvailable
from pool.errors import AllAttemptsFailed
from pool.light import LightConfig, open_light_client
from validator.testing import validator_process

pytestmark = [pytest.mark.process, pytest.mark.chain, pytest.mark.slow]

USERS = "Dear assistant,"  # how the cheater tells its users from the validators (an oracle, the worst case)
TOPICS = ("rivers", "prime numbers", "bread", "the moon", "chess", "bees", "glass", "maps", "rain", "salt")


def _metric(process, name: str, **labels: str) -> float:
    text = httpx.get(process.ready["metrics"], timeout=10).text
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series in (name, f"{name}{{{wanted}}}"):
            return float(value)
    return 0.0


@pytest.fixture
def relay(tmp_path_factory):
    peer = relay_process(tmp_path_factory.mktemp("relay"))
    trio.run(peer.wait_ready)
    yield peer
    peer.stop()


@pytest.mark.trio
async def test_a_node_cheating_only_on_its_users_is_struck_by_their_shared_answers(
    tmp_path, relay, tiny_model_dir
):
    from chain.client import ChainClient
    from chain.testing import open_deployed_chain
    from node.registration import register_node

    processes = []
    try:
        with open_deployed_chain(tmp_path / "chain") as chain:
            operator = ChainClient(chain.rpc_url, chain.deployment, chain.keys[4])
            node_dir = tmp_path / "cheat"
            await trio.to_thread.run_sync(register_node, node_dir, operator)
            chain_args = ("--rpc-url", chain.rpc_url, "--deployment", str(chain.path))
            cheat = node_process(
                node_dir,
                tiny_model_dir,
                "--bootstrap",
                relay.addr,
                *chain_args,
                program=("tests.validator.cheating_node", "selective", USERS, "--", "-v", "node"),
            )
            processes.append(cheat)
            validators = []
            for index in (1, 2, 3):  # the dev chain's genesis validator set
                data_dir = tmp_path / f"validator-{index}"
                data_dir.mkdir()
                (data_dir / "validator.key").write_text(chain.keys[index] + "\n")
                os.chmod(data_dir / "validator.key", 0o600)
                process = validator_process(data_dir, tiny_model_dir, "--bootstrap", relay.addr, *chain_args)
                processes.append(process)
                validators.append(process)
            for process in processes:
                await process.wait_ready(240)
            config = LightConfig(
                bootstrap=(relay.addr,),
                chain_rpc_url=chain.rpc_url,
                chain_deployment=chain.path,
                chain_refresh_s=2.0,
            )
            model_id = (await trio.to_thread.run_sync(_model_id, tiny_model_dir)).hex()
            served = 0
            async with open_light_client(config) as client:
                model = await client.watcher.resolve(model_id, timeout=60)
                await client.watcher.watch(model)
                with trio.fail_after(600):
                    while served < 400:
                        topic = TOPICS[served % len(TOPICS)]
                        prompt = f"{USERS} tell me one thing about {topic} ({served})."
                        try:
                            await client.ask(model, [("user", prompt)], max_tokens=12)
                        except (NoNodeAvailable, AllAttemptsFailed):
                            break  # banned: the router no longer sends users to it
                        served += 1
                        if served % 10 == 0 and await trio.to_thread.run_sync(_banned_everywhere, validators):
                            break
                    while not await trio.to_thread.run_sync(_banned_everywhere, validators):
                        await trio.sleep(1)
                sharer = client.sharer
                assert sharer is not None and sharer.shared >= 2
            # The genuine model answered every challenge: only the users' shared answers failed.
            for process in validators:
                assert _metric(process, "dolphin_validator_challenges_total", outcome="failed") == 0
            failed = sum(
                _metric(v, "dolphin_validator_shared_answers_total", outcome="failed") for v in validators
            )
            striking = [v for v in validators if _metric(v, "dolphin_validator_strikes_published_total") >= 1]
            assert failed >= 2 and len(striking) >= 2
            print(f"served {served} user requests before the ban; {sharer.shared} shared, {failed:g} failed")
    except BaseException:
        for process in processes:
            print(f"--- {process.data_dir}\n{process.log_tail(3000)}")
        raise
    finally:
        for process in processes:
            process.stop()


def _model_id(model_dir) -> bytes:
    from node.models import load_manifest

    return load_manifest(model_dir).model_id()


def _banned_everywhere(validators) -> bool:
    return all(
        _metric(v, "dolphin_validator_bans_total") + _metric(v, "dolphin_validator_nodes", status="banned")
        >= 1
        for v in validators
    )
