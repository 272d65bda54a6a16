"""Bans only the guilty suffer, and cannot run from, between separate processes on Anvil: three
`dolphin validator` processes (the dev chain's genesis set) and a `dolphin node` process registered and
bonded by its operator.

- An outsider's notice: each validator strikes an honest node for a minor reason (its configured time to
  first token is 1 ms: `too_slow`, 3 points); an outsider collects the strikes from gossip and stitches
  them into a BanNotice claiming `wrong_model`. The notice reaches every validator and a router: no one
  bans, no decision reaches the chain, the operator's bond is unchanged, the node is still routed.
  With the validator keys of the dev chain, the outsider then re-signs the honest strike's evidence in two
  validators' names as `wrong_model` strikes (8 points each, 16 of 12 as claimed), gossips them (the third
  validator re-checks and counts them, at `too_slow`: what the evidence shows) and publishes their
  notices: one of strikes dated just outside the chain's window (the routers' window check alone refuses
  it: the honest node's only failure, `too_slow`, never adds up to a ban, so no honest strike of it can be
  old and heavy enough), and one of current, downgraded strikes (the validators' recomputation refuses it;
  routers, which cannot re-run checks, count what strikes claim).
- No escape: the node serves another model than it announces. The first validator strikes it alone (the
  others barely sample: one strike is public, not a ban); the operator then unregisters the node; when
  the other validators strike it too, the ban slashes the operator all the same, its binding being
  slashable for the unbound period."""

import dataclasses

import pytest
import trio

from node.registration import register_node
from p2p import HostConfig, open_host, signed_message_validator
from p2p.testing import wait_until
from pool.bans import BanRules
from pool.light import VALIDATORS_DOMAIN_CONTRACT, open_light_client
from protocols import envelope
from protocols.eth import EthAccount, TypedDomain, keccak256
from protocols.ids import BANS_TOPIC, STRIKES_TOPIC
from protocols.keys import Identity, peer_id_from_text, public_key_from_peer_id
from protocols.messages import StrikeReport, eth_sign
from tests.pool.test_chain_routing import _config
from tests.validator.processes import (
    FAST_SAMPLING,
    bonded_operator,
    chain_node,
    chain_validator,
    metric,
    ready,
    started_processes,
)
from validator.strikes import ban_notice

pytestmark = [
    pytest.mark.integration,
    pytest.mark.process,
    pytest.mark.chain,
    pytest.mark.slow,
    pytest.mark.timeout(900),  # two waits for strikes by validator processes on a loaded machine
]

QUIET_SAMPLING = ("--base-per-hour", "0.001", "--max-per-hour", "0.001", "--concurrency", "1")
# A ban's slashing decision is signed two standing intervals (and 5 s) after the ban: 15 s, not 125 s.
QUICK_DECISIONS = {"standing_interval": 5.0}


def _validator(tmp_path, chain, index: int, model_dir, relay, sampling, settings=None):
    return chain_validator(
        tmp_path / f"validator-{index}", chain, index, model_dir, relay, *sampling, settings=settings
    )


def _resigned(strike: StrikeReport, key: str, domain: TypedDomain, **changes) -> StrikeReport:
    """`strike` with its evidence, signed in the name of the validator whose wallet `key` is."""
    account = EthAccount(bytes.fromhex(key.removeprefix("0x")))
    fields = {f.name: getattr(strike, f.name) for f in dataclasses.fields(strike) if f.name != "signature"}
    return eth_sign(StrikeReport, account, domain, **(fields | changes | {"validator": account.address}))


async def _until(predicate, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(predicate):
            await trio.sleep(1)


async def _refused_by(validators, router, notices: int) -> None:
    """Until each of `validators` (and `router`, unless None) has refused `notices` ban notices: judged,
    not just not yet heard of."""
    await _until(
        lambda: all(metric(v, "dolphin_validator_ban_notices_refused_total") >= notices for v in validators),
        timeout=60,
    )
    if router is not None:
        await wait_until(lambda: router.watcher.bans.refused >= notices, timeout=60)


@pytest.mark.trio
async def test_an_outsiders_notice_of_counted_minor_strikes_bans_and_slashes_no_one(
    tmp_path, relay, model, deployed_chain
):
    """Attack (security review): the BANS check needed only strikes of two current validators, and
    validators signed a decision once they had counted every strike, whatever they added up to."""
    model_dir, _ = model
    with started_processes() as processes:
        operator, bonded = await bonded_operator(deployed_chain)
        node_dir = tmp_path / "node"
        await trio.to_thread.run_sync(register_node, node_dir, operator)
        node = await ready(processes, chain_node(node_dir, model_dir, relay, deployed_chain))
        node_key = public_key_from_peer_id(peer_id_from_text(node.peer_id))
        async with (
            open_host(HostConfig(tmp_path / "outsider", bootstrap=(relay.addr,))) as outsider,
            open_light_client(_config(deployed_chain, relay)) as router,
        ):
            strikes_seen = await outsider.gossip.subscribe(
                STRIKES_TOPIC, signed_message_validator(StrikeReport)
            )
            minor = {"max_ttft_ms": 1, "exclude_points": 12}  # every answer is too slow for them
            validators = [
                await ready(
                    processes, _validator(tmp_path, deployed_chain, i, model_dir, relay, FAST_SAMPLING, minor)
                )
                for i in (1, 2, 3)
            ]
            for validator in validators:
                await outsider.connect(validator.addr)
            await router.host.connect(outsider.listen_addrs()[0])
            strikes: dict[bytes, StrikeReport] = {}
            with trio.fail_after(300):
                while len(strikes) < 2:  # one may strike before the outsider listens
                    message = await strikes_seen.receive()
                    strike = envelope.open_signed(message.data, StrikeReport).message
                    assert strike.node_key == node_key and strike.reason == "too_slow"
                    strikes[strike.validator] = strike
            # Counted by every validator: 3 points each of the 12 a ban needs; the outsider says wrong_model.
            notice = ban_notice(list(strikes.values()), epoch=max(s.epoch for s in strikes.values()))
            notice = dataclasses.replace(notice, reason="wrong_model")
            with trio.fail_after(60):
                wanted = {v.peer_id for v in validators} | {router.host.peer_id}
                while not wanted <= set(outsider.gossip.topic_peers(BANS_TOPIC)):
                    await trio.sleep(0.2)
            seed = Identity(outsider.signing_seed())
            await outsider.gossip.publish(BANS_TOPIC, envelope.sign(notice, seed))
            await _refused_by(validators, router, 1)
            assert not router.watcher.bans.banned(node_key)
            for validator in validators:
                assert metric(validator, "dolphin_validator_bans_total") == 0
                assert metric(validator, "dolphin_validator_nodes", status="banned") == 0

            # Strikes in the names of validators 1 and 2 (a validator never counts one in its own name that
            # it did not make): validator 3 re-checks them. The first dated outside the window, then current.
            domain = await trio.to_thread.run_sync(operator.domain, VALIDATORS_DOMAIN_CONTRACT)
            rules = BanRules.from_chain(
                await trio.to_thread.run_sync(operator.call, "Slashing", "strikeRules")
            )
            honest, checker = next(iter(strikes.values())), validators[2]
            heavy = {"reason": "wrong_model", "severity": rules.severities["wrong_model"]}
            old, downgraded = (
                [_resigned(honest, deployed_chain.keys[i], domain, epoch=epoch, **heavy) for i in (1, 2)]
                for epoch in (notice.epoch - rules.window_epochs, notice.epoch)
            )
            counted = metric(checker, "dolphin_validator_strikes_received_total", reproduced="yes")
            with trio.fail_after(60):
                while checker.peer_id not in outsider.gossip.topic_peers(STRIKES_TOPIC):
                    await trio.sleep(0.2)
            for strike in old + downgraded:
                await outsider.gossip.publish(STRIKES_TOPIC, envelope.sign(strike, seed))
            await _until(
                lambda: (
                    metric(checker, "dolphin_validator_strikes_received_total", reproduced="yes")
                    >= counted + 4
                ),
                timeout=180,
            )
            stale = ban_notice(old, epoch=notice.epoch, reason="wrong_model")
            await outsider.gossip.publish(BANS_TOPIC, envelope.sign(stale, seed))
            await _refused_by([checker], router, 2)
            assert not router.watcher.bans.banned(node_key)
            # From a host of its own: gossip scores down a peer whose notices were refused until its
            # messages are dropped, which would hide this notice from the validators.
            lowered = ban_notice(downgraded, epoch=notice.epoch, reason="wrong_model")
            async with open_host(HostConfig(tmp_path / "outsider-2")) as second:
                await second.connect(checker.addr)
                with trio.fail_after(60):
                    while checker.peer_id not in second.gossip.topic_peers(BANS_TOPIC):
                        await trio.sleep(0.2)
                second_seed = Identity(second.signing_seed())
                await second.gossip.publish(BANS_TOPIC, envelope.sign(lowered, second_seed))
                await _refused_by([checker], None, 3)
            for validator in validators:
                assert metric(validator, "dolphin_validator_bans_total") == 0
                assert metric(validator, "dolphin_validator_nodes", status="banned") == 0
        assert await trio.to_thread.run_sync(operator.events, "Slashing", "StrikeExecuted") == []
        assert (
            await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address) == bonded
        )


@pytest.mark.trio
async def test_an_operator_that_unregisters_after_the_first_strike_is_slashed_all_the_same(
    tmp_path, relay, model, deployed_chain
):
    model_dir, _ = model
    with started_processes() as processes:
        operator, bonded = await bonded_operator(deployed_chain)
        node_dir = tmp_path / "cheat"
        await trio.to_thread.run_sync(register_node, node_dir, operator)
        cheat = chain_node(
            node_dir,
            model_dir,
            relay,
            deployed_chain,
            ("tests.validator.cheating_node", "other-seed", "--", "-v", "node"),
        )
        await ready(processes, cheat)
        peer_hash = keccak256(peer_id_from_text(cheat.peer_id))
        assert await trio.to_thread.run_sync(
            operator.call, "Bonding", "isNodeOf", operator.address, peer_hash
        )
        quiet = [  # started first, so that they hear the first strike
            await ready(
                processes,
                _validator(tmp_path, deployed_chain, i, model_dir, relay, QUIET_SAMPLING, QUICK_DECISIONS),
            )
            for i in (2, 3)
        ]
        first = await ready(
            processes,
            _validator(tmp_path, deployed_chain, 1, model_dir, relay, FAST_SAMPLING, QUICK_DECISIONS),
        )

        def slashed() -> list:
            events = operator.events("Slashing", "StrikeExecuted")
            return [e for e in events if e["args"]["offender"] == operator.address]

        # The first strike, public: the others counted it.
        await _until(
            lambda: all(
                metric(v, "dolphin_validator_strikes_received_total", reproduced="yes") >= 1 for v in quiet
            ),
            timeout=300,
        )
        assert metric(first, "dolphin_validator_strikes_published_total") >= 1
        assert [metric(v, "dolphin_validator_strikes_published_total") for v in quiet] == [0, 0]
        assert not await trio.to_thread.run_sync(slashed)
        # The operator runs: it unregisters the node before anyone else strikes.
        await trio.to_thread.run_sync(operator.unregister_node, peer_hash)
        assert not await trio.to_thread.run_sync(
            operator.call, "Bonding", "isNodeOf", operator.address, peer_hash
        )
        # The other validators start sampling it in earnest (restarted; they keep the strike they counted).
        for index, validator in zip((2, 3), quiet, strict=True):
            validator.stop(timeout=60)
            await ready(
                processes,
                _validator(tmp_path, deployed_chain, index, model_dir, relay, FAST_SAMPLING, QUICK_DECISIONS),
            )
        await _until(slashed, timeout=300)
        (event,) = await trio.to_thread.run_sync(slashed)
        assert event["args"]["shares"] == bonded // 2
        remaining = await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address)
        assert remaining == bonded - bonded // 2
