"""No escape from a strike, and awards every validator books alike, on a real local chain (Anvil, the
deployed contracts) with the genesis validators in this process on one gossip bus:

- an operator that unregisters its node after the first (public) strike is slashed all the same, the
  binding being slashable for Bonding.UNBOUND_SLASHABLE_PERIOD after it is removed;
- the awards of an epoch are decided from the chain at its closing block, so a validator that receives the
  ban a month later, after the chain moved on, books the same awards as those that saw it at once, and
  the settlement the validators run (`close_on_chain`) gives all three the same root. The awards are not
  empty: the user whose report the ban rests on takes the slash's reporter cut on chain, and the first
  striking validator its award out of the rest of the slash;
- the share a decision slashes is the chain's (`Slashing.slashBps`, set small here, so what the slash
  leaves caps the award below `validatorAward`), not each validator's own setting: validators set
  differently signed different decisions and booked different awards, so different roots."""

import pytest
import trio

from chain.client import ChainClient
from chain.deploy import DeployParams
from chain.devchain import time_travel
from chain.testing import open_deployed_chain
from protocols import envelope
from protocols import testing as pt
from protocols.eth import keccak256
from protocols.inference import countersign_receipt
from protocols.keys import Identity, peer_id_from_public_key
from protocols.messages import StrikeReport, UserReport
from tests.validator.cheats import modified_engine
from tests.validator.test_slashing import LONG, SAMPLED, _genesis_validators
from validator.closing import close_on_chain, find_closing_block
from validator.daemon import _awards
from validator.strikes import RewardRow
from validator.testing import NodeKeys, answer_in_process

pytestmark = [
    pytest.mark.integration,
    pytest.mark.process,
    pytest.mark.chain,
    pytest.mark.slow,
    pytest.mark.trio,
]

POD = 10**18
DAY = 86400
SLASH_BPS = 2
"""0.02% of the 300k POD bond: 60 POD slashed, 6 of them the reporter's, 54 left: under the 100 POD award."""


@pytest.fixture(scope="module")
def cheat_engine(tiny_model_dir):
    engine = modified_engine(tiny_model_dir, "other-seed", max_batch=4)
    yield engine
    engine.close()


async def _strike(validator, engine, reference, keys, reporter=None):
    """Challenge the cheat until `validator` strikes it; with `reporter`, a user (that address) reports
    each answer first, as the client of it, so the strike rests on its report."""
    for challenge in (LONG, SAMPLED):
        session = Identity.generate()
        answer = await answer_in_process(
            engine, challenge, model=reference.model_id, keys=keys, session=session
        )
        if reporter is not None:
            report = UserReport(
                request_id=answer.request.request_id,
                node_key=keys.identity.public_key,
                model=reference.model_id,
                receipt=countersign_receipt(answer.evidence.receipt, session),
                reason="the answer made no sense",
                reporter=reporter,
            )
            signed = envelope.open_signed(envelope.sign(report, session), UserReport)
            await validator.on_user_report(signed)
        await validator.judge(answer)
        struck = validator.book.strikes(keys.identity.public_key, validator.epoch)
        if any(s.validator == validator.address for s in struck):
            return
    raise AssertionError("the cheat was not struck")


async def test_unregistering_after_the_first_strike_escapes_nothing_and_late_bans_book_the_same_awards(
    tmp_path, cheat_engine, reference, thresholds
):
    with open_deployed_chain(tmp_path / "chain", params=DeployParams(slash_bps=SLASH_BPS)) as chain:
        operator = ChainClient(chain.rpc_url, chain.deployment, chain.keys[4])
        await trio.to_thread.run_sync(operator.stake, 300_000 * POD)
        await trio.to_thread.run_sync(operator.bond)
        keys = NodeKeys()
        node = keys.identity.public_key
        peer_hash = keccak256(peer_id_from_public_key(node))
        binding = await trio.to_thread.run_sync(operator.register_node, peer_hash)
        user = pt.eth_account(40).address
        before = await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address)
        async with _genesis_validators(tmp_path, chain, reference, thresholds) as (first, second, third):
            for validator in (first, second, third):
                validator.node_seen(node, binding.operator)
            await _strike(first, cheat_engine, reference, keys, reporter=user)
            # The first strike is public: the operator unregisters the node, and its heartbeats stop naming
            # the binding.
            await trio.to_thread.run_sync(operator.unregister_node, peer_hash)
            for validator in (first, second, third):
                validator.node_seen(node, None)
            await _strike(second, cheat_engine, reference, keys)
            assert [v.status(node) for v in (first, second, third)] == ["banned"] * 3
            ban = third._bans[node]
            epoch = ban.message.epoch
            events = await trio.to_thread.run_sync(operator.events, "Slashing", "StrikeExecuted")
            (event,) = [e for e in events if e["args"]["evidenceHash"] == ban.message.evidence_hash()]
            assert event["args"]["offender"] == operator.address
            after = await trio.to_thread.run_sync(operator.call, "Bonding", "slashableOf", operator.address)
            assert after == before - event["args"]["shares"] == before - before * SLASH_BPS // 10_000

            # The epoch closes; then a month passes: the binding is no longer slashable, the rules change.
            now = chain.w3.eth.get_block("latest")["timestamp"]
            time_travel(chain.w3, (epoch + 1) * DAY - now + 60)
            time_travel(chain.w3, 1)  # a block after the closing one
            block = find_closing_block(operator, epoch, DAY * 1000)
            assert block is not None
            early = [await trio.to_thread.run_sync(v.awards, epoch, block) for v in (first, second)]
            totals = [await _awards(v, v.chain, DAY * 1000, epoch) for v in (first, second)]
            time_travel(chain.w3, 31 * DAY)
            assert not await trio.to_thread.run_sync(first.chain.slashable, ban.message.operator, node)
        # A validator that gets the strikes and the ban only now books what the others booked at once.
        async with _genesis_validators(tmp_path / "late", chain, reference, thresholds) as (_, _, late):
            for strike in ban.message.strikes:
                full = third._full_strikes[strike.signature]
                assert await late.on_strike(
                    envelope.open_signed(envelope.sign(full, third.peer), StrikeReport)
                )
            await late.on_ban(ban)
            assert late.status(node) == "banned"
            assert await trio.to_thread.run_sync(late.awards, epoch, block) == early[0] == early[1]
            totals.append(await _awards(late, late.chain, DAY * 1000, epoch))
        # The slash paid the user its reporter cut on chain; the pool owes the first striking validator its
        # award, out of the rest of the slash, which is less than the award.
        assert event["args"]["reporter"].lower() == "0x" + user.hex()
        # The first striker is the first in the notice's canonical order (epoch, then signature): one that
        # every validator names alike, whichever strike each heard first.
        first_address = "0x" + ban.message.strikes[0].validator.hex()
        # What the pool pays out of: the chain's share of what was left slashable at the closing block, in
        # POD, less the reporter's cut (10%).
        shares = after * SLASH_BPS // 10_000
        taken = await trio.to_thread.run_sync(
            lambda: operator.call("StakedPOD", "convertToAssets", shares, block=block)
        )
        award = taken - taken // 10
        assert 0 < award < (await trio.to_thread.run_sync(operator.call, "Slashing", "strikeRules"))[5]
        assert early[0] == [
            RewardRow(
                epoch,
                ban.message.strikes[0].validator,
                "validator",
                award,
                True,
                ban.message.evidence_hash(),
                node,
            )
        ]
        assert totals == [{first_address: award}] * 3
        # The three sign the same root: the settlement each runs at the closing block, on its own awards.
        roots = {
            (
                await trio.to_thread.run_sync(
                    lambda t=t: close_on_chain(operator, epoch, DAY * 1000, block, [], {}, awards=t)
                )
            ).settlement.tree.root
            for t in totals
        }
        assert len(roots) == 1
