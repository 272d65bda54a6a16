"""The validator's status model: what GET /status and the validator's dashboard show.

Like the node's (`node.status`), it keeps no second copy of what the daemon already knows: counters come
back from the validator's Prometheus registry (/metrics), judgements from `Validator` and its state,
settlements and receipts from the evidence store, the money loop's progress from its `statistics()`, and
/health's document as is. It adds a bounded history of challenge rates for the charts, and a periodic chain
read (this wallet's bond, stake and claimed rewards; the buyback's revenue and POD bought back) done in a
worker thread, so an unreachable chain shows as one instead of stalling the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import trio

from chain.client import ChainClient
from node.status import LastChainRead, RateHistory, registry_reader, serve_status
from protocols.messages import STANDINGS
from validator.checks import CHECKS
from validator.epochs import SettlementService
from validator.evidence import EvidenceStore
from validator.metrics import OUTCOMES, ValidatorMetrics
from validator.service import Validator
from validator.state import ValidatorState

__all__ = ["ChainView", "ValidatorStatus", "read_counters"]

NODES_SHOWN = 200
STRIKES_SHOWN = 50
SETTLEMENTS_SHOWN = 8


def read_counters(metrics: ValidatorMetrics) -> dict:
    """The validator's totals as /metrics shows them, read back from its registry."""
    total = registry_reader(metrics.registry)

    return {
        "challenges": {o: total("dolphin_validator_challenges_total", outcome=o) for o in OUTCOMES},
        "check_failures": {
            c: total("dolphin_validator_check_failures_total", check=c) for c in (*CHECKS, "benchmark")
        },
        "strikes_published": total("dolphin_validator_strikes_published_total"),
        "strikes_received": {
            r: total("dolphin_validator_strikes_received_total", reproduced=r) for r in ("yes", "no")
        },
        "bans": total("dolphin_validator_bans_total"),
        "slashes_submitted": total("dolphin_validator_slashes_submitted_total"),
        "nodes": {s: total("dolphin_validator_nodes", status=s) for s in STANDINGS},
        "validator_set": total("dolphin_validator_set_members"),
    }


@dataclass(frozen=True)
class ChainView:
    """This validator's account and the buyback, as the chain said at one block."""

    block: int
    bond: int  # POD wei actively bonded
    staked: int  # POD wei staked (stkPOD's value)
    rewards_claimed: int
    validator_weight: int
    active_root_epoch: int
    revenue: int  # payment token units the credits have earned in all
    awaiting_buyback: int
    pod_bought_back: int

    def to_json(self) -> dict:
        """Amounts as decimal strings (wei does not fit a double in the browser)."""
        return {
            "block": self.block,
            "bond": str(self.bond),
            "staked": str(self.staked),
            "rewards_claimed": str(self.rewards_claimed),
            "validator_weight": str(self.validator_weight),
            "active_root_epoch": self.active_root_epoch,
            "revenue": str(self.revenue),
            "awaiting_buyback": str(self.awaiting_buyback),
            "pod_bought_back": str(self.pod_bought_back),
        }


def read_chain_view(client: ChainClient) -> ChainView:
    """Blocking chain reads for the status (ChainError when the chain is down)."""
    account = client.status()
    money = client.money_status()
    return ChainView(
        block=account.block,
        bond=account.active_bond_value,
        staked=account.staked_value,
        rewards_claimed=account.rewards_claimed,
        validator_weight=account.validator_weight,
        active_root_epoch=account.active_root[0],
        revenue=money.revenue,
        awaiting_buyback=money.awaiting_buyback,
        pod_bought_back=money.pod_bought_back,
    )


class ValidatorStatus:
    """The validator's status model (module docstring). `serve` samples it; `snapshot()` is GET /status.
    The money loop's parts (`settlement`, `evidence`, `chain`, `keeper`) are set once they run."""

    def __init__(
        self,
        *,
        peer_id: str,
        validator: Validator,
        state: ValidatorState,
        metrics: ValidatorMetrics,
        health: Callable[[], dict],
        model: dict,
        chain_url: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peer_id = peer_id
        self.validator = validator
        self.state = state
        self.metrics = metrics
        self.health = health
        self.model = model
        self.chain_url = chain_url
        self.clock = clock
        self.chain: ChainClient | None = None
        self.evidence: EvidenceStore | None = None
        self.settlement: SettlementService | None = None
        self.keeper: bool | None = None
        self.history = RateHistory()
        self._view: LastChainRead[ChainView] = LastChainRead()

    def sample(self) -> None:
        counters = read_counters(self.metrics)
        challenges = counters["challenges"]
        totals = {"challenges": sum(challenges.values()), "failed": challenges["failed"]}
        gauges = {"in_flight": self.health().get("in_flight", 0)}
        self.history.record(self.clock(), time.time_ns() // 1_000_000, totals, gauges)

    async def refresh_chain(self) -> None:
        """Read the chain view once (in a worker thread); a failure is kept and shown, never raised."""
        if self.chain is not None:
            await self._view.refresh(partial(read_chain_view, self.chain))

    async def serve(
        self,
        *,
        interval: float = 1.0,
        chain_interval: float = 30.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Sample every `interval` seconds and read the chain every `chain_interval`, until cancelled
        (`serve_status`)."""
        await serve_status(
            self.sample,
            self.refresh_chain,
            interval=interval,
            chain_interval=chain_interval,
            task_status=task_status,
        )

    async def _nodes(self) -> list[dict]:
        epoch = self.validator.epoch
        shown = []
        for key in self.validator.nodes()[:NODES_SHOWN]:
            checks, failed = await self.state.check_counts(key, epoch)
            shown.append(
                {
                    "node_key": key.hex(),
                    "status": self.validator.status(key),
                    "suspicion": self.validator.suspicion(key).probability,
                    "checks_this_epoch": checks,
                    "failed_this_epoch": failed,
                }
            )
        return shown

    async def _strikes(self) -> list[dict]:
        strikes = await self.state.strikes()
        return [
            {
                "node_key": strike.node_key.hex(),
                "validator": "0x" + strike.validator.hex(),
                "reason": reason,
                "severity": strike.severity,
                "epoch": strike.epoch,
                "own": own,
                "counted": counted,
                "evidence_hash": strike.evidence_hash.hex(),
            }
            for strike, own, counted, reason in reversed(strikes[-STRIKES_SHOWN:])
        ]

    async def _money(self) -> dict | None:
        if self.evidence is None:
            return None
        address = "0x" + self.validator.address.hex()
        settled = []
        before = None
        for _ in range(SETTLEMENTS_SHOWN):
            record = await self.evidence.last_settlement(before)
            if record is None:
                break
            ours = None
            if record.tree is not None:
                ours = next((v for k, v in record.tree.amounts.items() if k.lower() == address), 0)
            settled.append(
                {
                    "epoch": record.epoch,
                    "receipts": record.receipt_count,
                    "snapshot_block": record.snapshot_block,
                    "root_status": record.root_status,
                    "rewards_root": record.tree.nodes[0].hex() if record.tree is not None else None,
                    "our_cumulative_rewards": str(ours) if ours is not None else None,
                    "debit_batches": len(record.debits),
                    "debit_batches_settled": len(record.debits_settled),
                }
            )
            before = record.epoch
        return {
            "loop": self.settlement.statistics() if self.settlement is not None else None,
            "receipts_held": await self.evidence.receipt_counts(),
            "settled": settled,
        }

    def _chain_section(self) -> dict:
        return {
            "url": self.chain_url,
            "configured": self.chain is not None,
            **self._view.section(),
            "view": self._view.value.to_json() if self._view.value is not None else None,
            "keeper": self.keeper,
        }

    async def snapshot(self) -> dict:
        """Everything the dashboard shows, as JSON-able data."""
        awards = [row for row in await self.state.rewards() if row.account == self.validator.address]
        return {
            "kind": "validator",
            "peer_id": self.peer_id,
            "validator": "0x" + self.validator.address.hex(),
            "in_validator_set": self.validator.validators.is_validator(self.validator.address),
            "epoch": self.validator.epoch,
            "model": self.model,
            "health": self.health(),
            "counters": read_counters(self.metrics),
            "checks": await self.state.check_totals(),
            "history": self.history.samples(),
            "nodes": await self._nodes(),
            "strikes": await self._strikes(),
            "bans": len(await self.state.bans()),
            "awards": {
                "count": len(awards),
                "total": str(sum(row.amount for row in awards)),
            },
            "money": await self._money(),
            "chain": self._chain_section(),
            "now_ms": time.time_ns() // 1_000_000,
        }
