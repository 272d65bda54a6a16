"""The validator's status model over its real state and evidence store: strikes with their evidence hashes,
settled epochs with our cumulative rewards, receipts held, and counters read back from /metrics' registry."""

import contextlib

import pytest
import trio
import trio_asyncio

from chain.quorum import QuorumRule
from chain.rewards import RewardParams
from chain.snapshot import ChainSnapshot
from node.local_api import serve_local_api
from protocols import testing as pt
from protocols.inference import verify_countersigned_receipt
from protocols.keys import Identity
from protocols.messages import StrikeReport, eth_sign, evidence_hash
from protocols.testing import countersigned_receipt
from tests.browser import open_page, wait_for
from validator import settle_epoch
from validator.evidence import open_evidence_store
from validator.metrics import ValidatorMetrics, build_app
from validator.service import Validator
from validator.settlement import EpochMarket
from validator.state import open_state
from validator.status import ValidatorStatus

pytestmark = [pytest.mark.integration, pytest.mark.trio]

EPOCH_MS = 10_000
EPOCH = 170_000_000
OURS, OTHER, CLIENT = pt.eth_account(21), pt.eth_account(22), pt.eth_account(5)
NODE = b"\3" * 32


def _strike(wallet):
    evidence = (b"a signed receipt", b"the answer")
    return eth_sign(
        StrikeReport,
        wallet,
        pt.TEST_DOMAIN,
        validator=wallet.address,
        node_key=NODE,
        operator=b"\0" * 20,
        model=pt.TEST_MODEL,
        epoch=EPOCH,
        reason="too_slow",
        severity=2,
        evidence_hash=evidence_hash(evidence),
        evidence=evidence,
    )


@contextlib.asynccontextmanager
async def _status(tmp_path, reference, thresholds):
    """A validator's status over its real state (a strike from another validator) and evidence store (a
    receipt, and its epoch settled with an award to us in the tree). Yields (status, strike, settlement)."""
    metrics = ValidatorMetrics()
    metrics.challenges.labels("passed").inc(3)
    metrics.challenges.labels("failed").inc()
    async with (
        trio_asyncio.open_loop(),
        open_state(tmp_path) as state,
        open_evidence_store(tmp_path, epoch_ms=EPOCH_MS) as store,
    ):
        validator = Validator(
            peer=Identity(b"\1" * 32),
            wallet=OURS,
            domain=pt.TEST_DOMAIN,
            reference=reference,
            thresholds=thresholds,
            state=state,
            publish=None,
            validators=QuorumRule.equal_weights([OURS.address, OTHER.address]),
        )
        await validator.load()
        strike = _strike(OTHER)
        await state.store_strike(strike, own=False, counted=True)
        receipt = verify_countersigned_receipt(
            countersigned_receipt(wallet=CLIENT, started_at_ms=EPOCH * EPOCH_MS + 1, prompt="hi")
        )
        assert await store.add_receipts([receipt]) == ["stored"]
        facts, credits = await store.facts(EPOCH)
        market = EpochMarket({pt.TEST_MODEL: 10**6}, {CLIENT.address: 10**6}, {}, 1, pt.TEST_DOMAIN)
        snapshot = ChainSnapshot(1, 1, RewardParams(), {}, frozenset(), frozenset())
        award = {"0x" + OURS.address.hex(): 7 * 10**18}
        settled = settle_epoch(EPOCH, EPOCH_MS, facts, credits, snapshot, market, awards=award)
        await store.record_settlement(settled, snapshot_block=9, deadline=99, root_status="pending")

        status = ValidatorStatus(
            peer_id="12D3KooWpeer",
            validator=validator,
            state=state,
            metrics=metrics,
            health=lambda: {"status": "ok", "nodes": 0, "in_flight": 2},
            model={"name": reference.name, "id": reference.model_id.hex()},
            chain_url=None,
        )
        status.evidence = store
        yield status, strike, settled


async def test_the_snapshot_shows_strikes_settlements_and_receipts_from_the_stores(
    tmp_path, reference, thresholds
):
    async with _status(tmp_path, reference, thresholds) as (status, strike, settled):
        status.sample()
        shown = await status.snapshot()

    assert shown["validator"] == "0x" + OURS.address.hex() and shown["in_validator_set"]
    assert shown["counters"]["challenges"] == {
        "passed": 3.0,
        "failed": 1.0,
        "unanswered": 0.0,
        "unchecked": 0.0,
    }
    assert shown["history"][-1]["in_flight"] == 2
    [listed] = shown["strikes"]
    assert listed["validator"] == "0x" + OTHER.address.hex() and listed["reason"] == "too_slow"
    assert listed["counted"] and not listed["own"]
    assert listed["evidence_hash"] == strike.evidence_hash.hex()
    money = shown["money"]
    assert money["receipts_held"] == {EPOCH: 1}
    [epoch] = money["settled"]
    assert epoch["epoch"] == EPOCH and epoch["receipts"] == 1 and epoch["root_status"] == "pending"
    assert epoch["our_cumulative_rewards"] == str(7 * 10**18)
    assert epoch["rewards_root"] == settled.tree.nodes[0].hex()
    assert shown["chain"]["configured"] is False and shown["chain"]["view"] is None


async def test_the_dashboard_draws_strikes_and_settled_epochs_without_a_console_error(
    tmp_path, reference, thresholds
):
    """The branches of the validator's page that need a chain's money loop, in a real browser: served by
    the validator's own HTTP app over the status model above."""
    async with (
        _status(tmp_path, reference, thresholds) as (status, _strike_shown, _settled),
        trio.open_nursery() as nursery,
    ):
        health = status.health
        app = build_app(ValidatorMetrics(), health, status.snapshot)
        url = await nursery.start(serve_local_api, app, "127.0.0.1:0")

        def look() -> dict:
            with open_page(f"{url}/dashboard") as (page, errors):
                wait_for(lambda: page.inner_text("#peer-id") == "12D3KooWpeer", what="the peer id")
                seen = {name: page.inner_text(f"#{name}") for name in ("strikes", "epochs", "account")}
                return {"errors": errors, **seen}

        seen = await trio.to_thread.run_sync(look)
        nursery.cancel_scope.cancel()
    assert seen["errors"] == []
    assert "too_slow" in seen["strikes"] and "yes" in seen["strikes"]
    assert str(EPOCH) in seen["epochs"] and "pending" in seen["epochs"] and "7 POD" in seen["epochs"]
    assert f"epoch {EPOCH}: 1" in seen["epochs"]  # receipts held
