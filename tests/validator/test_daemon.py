"""`dolphin validator` as processes against real nodes: an honest node passes many challenges under load and
an audit; a node serving another model than it announces is struck, banned and slashed on a local chain;
validators drain on SIGTERM."""

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from node.processes import node_process
from node.testing import find_member, watch_pool
from p2p import DhtMode, HostConfig, open_host
from p2p.testing import wait_until
from pool import InferenceFailed, complete
from pool.tokenizers import fetch_tokenizer
from protocols.keys import Identity
from tests.validator.processes import (
    FAST_SAMPLING,
    bonded_operator,
    chain_node,
    chain_validator,
    metric,
    ready,
    started_processes,
)
from validator.daemon import write_wallet
from validator.processes import validator_process

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chain, pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]


def _config(data_dir: Path, *others: str, **settings: object) -> None:
    """A validator.toml naming the other validators (no chain) and more settings."""
    lines = [f"validators = {json.dumps(list(others))}"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "validator.toml").write_text("\n".join(lines) + "\n")


def _audit(relay, model_dir: Path, peer_id: str, challenges: int = 4) -> tuple[int, dict]:
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "validator",
        "audit",
        "--bootstrap",
        relay.addr,
        "--reference",
        str(model_dir),
        "--peer",
        peer_id,
        "--challenges",
        str(challenges),
        "--json",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.stdout.strip(), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


@pytest.mark.trio
async def test_an_honest_node_passes_many_challenges_under_load_and_an_audit(tmp_path, relay, model):
    model_dir, model_id = model
    with started_processes() as processes:
        node = await ready(processes, node_process(tmp_path / "node", model_dir, "--bootstrap", relay.addr))
        addresses = [write_wallet(tmp_path / f"validator-{i}" / "validator.key") for i in range(2)]
        validators = []
        for i in range(2):
            data_dir = tmp_path / f"validator-{i}"
            # Challenges now ask for clients' lengths (often 256 tokens, which the tiny model always uses up):
            # capped here so that twenty of them fit the test's time on a busy CPU.
            _config(data_dir, "0x" + addresses[1 - i], standing_interval=2.0, challenge_max_tokens=48)
            process = validator_process(data_dir, model_dir, "--bootstrap", relay.addr, *FAST_SAMPLING)
            validators.append(await ready(processes, process))
        config = HostConfig(tmp_path / "client", bootstrap=(relay.addr,), dht_mode=DhtMode.CLIENT)
        async with open_host(config) as client, trio.open_nursery() as load:
            member = await find_member(client, await watch_pool(client, model_id), node.peer_id)
            answered = 0

            async def keep_asking() -> None:  # other clients' traffic, four streams at a time
                nonlocal answered
                while True:
                    with contextlib.suppress(InferenceFailed):
                        await complete(
                            client,
                            member.contact,
                            [("user", "Tell me a story.")],
                            identity=Identity.generate(),
                            max_tokens=24,
                        )
                        answered += 1

            for _ in range(4):
                load.start_soon(keep_asking)
            for validator in validators:
                await wait_until(
                    lambda v=validator: (
                        metric(v, "dolphin_validator_challenges_total", outcome="passed") >= 10
                    ),
                    timeout=240,
                )
            load.cancel_scope.cancel()
            # A validator serves its reference model's tokenizer (clients of a pool that withholds it ask).
            await client.connect(validators[0].addr)
            files = await fetch_tokenizer(client, model_id, [validators[0].peer_id])
            assert files["tokenizer.json"] == (model_dir / "tokenizer.json").read_bytes()
        assert answered > 0
        for validator in validators:
            assert metric(validator, "dolphin_validator_challenges_total", outcome="failed") == 0
            assert metric(validator, "dolphin_validator_strikes_published_total") == 0
            assert metric(validator, "dolphin_validator_nodes", status="good") == 1
        status, report = await trio.to_thread.run_sync(_audit, relay, model_dir, node.peer_id)
        assert status == 0 and report["verdict"] == "pass" and report["peer"] == node.peer_id
        assert report["challenges"] == 4 and report["failed"] == 0
        assert report["checks"]["fingerprint"]["failed"] == 0 and report["checks"]["tokens"]["passed"] == 4
        # SIGTERM drains: the validator stops on its own, removing ready.json.
        validator = validators[0]
        validator.process.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: validator.process.wait(timeout=60)) == 0
        assert not (validator.data_dir / "ready.json").exists()
        assert "draining" in validator.log_tail(20_000)


@pytest.mark.trio
async def test_a_node_that_never_dials_a_validator_is_found_and_struck(tmp_path, relay, model):
    """Attack: validators only heard the heartbeats of nodes that happened to connect to them (a node
    without a chain never dials one; gossip reaches connected subscribers only). A substituted model that
    joined after the validator went unsampled for a minute or more, depending on the DHT's own traffic."""
    model_dir, _ = model
    with started_processes() as processes:
        write_wallet(tmp_path / "validator" / "validator.key")
        validator = await ready(
            processes,
            validator_process(tmp_path / "validator", model_dir, "--bootstrap", relay.addr, *FAST_SAMPLING),
        )
        cheat = ("tests.validator.cheating_node", "other-seed", "--", "-v", "node")
        await ready(
            processes, node_process(tmp_path / "node", model_dir, "--bootstrap", relay.addr, program=cheat)
        )
        # Found through the pool's DHT records within a second, challenged about a second later.
        await wait_until(
            lambda: metric(validator, "dolphin_validator_strikes_published_total") >= 1,
            timeout=30,
            interval=0.5,
        )
        assert metric(validator, "dolphin_validator_challenges_total", outcome="failed") >= 1


@pytest.mark.trio
@pytest.mark.timeout(900)  # a chain, four processes and a quorum of decisions on a loaded machine
async def test_a_substituted_model_is_struck_banned_and_slashed_on_chain(tmp_path, relay, model):
    from chain.client import ChainClient
    from chain.testing import open_deployed_chain
    from node.registration import register_node

    model_dir, _ = model
    with open_deployed_chain(tmp_path / "chain") as chain, started_processes() as processes:
        operator, bonded = await bonded_operator(chain)
        node_dir = tmp_path / "cheat"
        await trio.to_thread.run_sync(register_node, node_dir, operator)
        # One validator listens when the cheater joins; the other two start once it struck, so they miss
        # its first strike (gossip is not replayed) and learn of it only from republications. All three
        # must still sign one decision: a full run once saw each sign one on a notice of its own (strikes
        # in the order each heard them, deadlines from each one's clock) and no quorum form. The rules
        # behind it are attacked deterministically in test_service and test_strikes.
        settings = {"standing_interval": 5.0}  # republications, and the decision two of them later

        def validator(index: int):  # type: ignore[no-untyped-def]
            directory = tmp_path / f"validator-{index}"
            return chain_validator(
                directory, chain, index, model_dir, relay, *FAST_SAMPLING, settings=settings
            )

        validators = [await ready(processes, validator(1))]
        cheat = chain_node(
            node_dir,
            model_dir,
            relay,
            chain,
            ("tests.validator.cheating_node", "other-seed", "--", "-v", "node"),
        )
        await ready(processes, cheat)
        await wait_until(
            lambda: metric(validators[0], "dolphin_validator_strikes_published_total") >= 1, timeout=240
        )
        for index in (2, 3):  # the rest of the dev chain's genesis validator set
            validators.append(await ready(processes, validator(index)))
        assert all(v.ready["in_validator_set"] for v in validators)

        def slashed() -> list:
            events = operator.events("Slashing", "StrikeExecuted")
            return [e for e in events if e["args"]["offender"] == operator.address]

        with trio.fail_after(300):
            while not await trio.to_thread.run_sync(slashed):
                await trio.sleep(1)
        (event,) = await trio.to_thread.run_sync(slashed)
        remaining = await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address)
        assert remaining == bonded - event["args"]["shares"] and event["args"]["shares"] == bonded // 2
        reporter = event["args"]["reporter"]
        assert reporter in {
            ChainClient(chain.rpc_url, chain.deployment, chain.keys[i]).address for i in (1, 2, 3)
        }
        await wait_until(
            lambda: all(
                metric(v, "dolphin_validator_bans_total")
                + metric(v, "dolphin_validator_nodes", status="banned")
                >= 1
                for v in validators
            ),
            timeout=60,
        )
        # The validator whose slash transaction landed counted it (the others found it done).
        await wait_until(
            lambda: sum(metric(v, "dolphin_validator_slashes_submitted_total") for v in validators) >= 1,
            timeout=60,
        )
        status, report = await trio.to_thread.run_sync(_audit, relay, model_dir, cheat.peer_id, 2)
        assert status == 1 and report["verdict"] == "fail" and report["checks"]["fingerprint"]["failed"] == 2


def test_an_audit_that_cannot_run_says_why_in_one_line_and_exits_3(relay, model):
    """Scripts must tell "the node failed" (1) from "no verdict" (3); a person gets no traceback."""
    model_dir, _ = model
    base = [sys.executable, "-m", "cli.main", "validator", "audit", "--reference", str(model_dir)]

    def audit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], cwd=ROOT, capture_output=True, text=True, timeout=200)

    relay_peer = relay.addr.rsplit("/p2p/", 1)[1]  # a real peer that serves no model: never found
    missing = audit("--bootstrap", relay.addr, "--peer", relay_peer, "--timeout", "3")
    assert missing.returncode == 3, missing.stderr[-3000:]
    assert f"node {relay_peer} was not found serving this model within 3 s" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) <= 2
    malformed = audit("--bootstrap", relay.addr, "--peer", "not-a-peer-0OIl")
    assert malformed.returncode == 2 and "is not a libp2p peer id" in malformed.stderr
    no_peer_id = audit("--bootstrap", "/ip4/127.0.0.1/tcp/4001", "--peer", relay_peer)
    assert no_peer_id.returncode == 2 and "/p2p/<peer-id>" in no_peer_id.stderr
