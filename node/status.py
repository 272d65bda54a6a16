"""The node's status model: one place that says how the node is doing, for GET /status and the dashboard.

It holds no numbers of its own where the node already keeps them: counters and gauges are read back from
the node's Prometheus registry (what /metrics shows), engine health from the engine (what /health shows),
identity and reachability from the host (what ready.json says), receipts from the ledger. What it adds:

- `RateHistory`: a bounded series of samples (requests/s, output tokens/s, mean time to first token,
  queue depth) taken on the daemon's clock, so the dashboard draws charts without keeping history itself;
- `StrikeWatch`: strikes against this node that current validators published on STRIKES_TOPIC, with
  their evidence hashes, so the operator sees why a node loses standing before it is banned. A strike
  counts only when a current validator signed it (a peer cannot alarm an operator with a forged one);
- a periodic chain read (registration, bond, rewards claimed, the model's price, the emission share), so
  an unreachable chain shows as one instead of stalling the page.

Prompts and answers never pass through here: only counts, times and hashes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio
from prometheus_client import CollectorRegistry

from chain.errors import ChainError
from chain.merkle import RewardsTree
from chain.rewards.base import PER_MILLION
from chain.rewards.params import BPS
from chain.snapshot import read_params
from chain.transactions import read
from node.engines.base import Engine
from node.ledger import Ledger
from node.metrics import REFUSAL_REASONS, NodeMetrics
from p2p import P2PError, Verdict, signed_message_validator
from pool.errors import TreeUnavailable
from protocols import envelope
from protocols.eth import TypedDomain
from protocols.messages import OperatorBinding, StrikeReport, eth_signer

__all__ = [
    "ChainFacts",
    "LastChainRead",
    "NodeStatus",
    "RateHistory",
    "Sample",
    "StrikeWatch",
    "chain_reader",
    "claimable",
    "estimated_reward",
    "read_counters",
    "registry_reader",
    "serve_status",
]

HISTORY_SAMPLES = 300  # five minutes at one sample a second
STRIKES_KEPT = 100


Sample = dict[str, float | int | None]


class RateHistory:
    """Samples of rates from monotonically growing totals, on the caller's clock; the oldest drop out past
    `capacity`. Each sample has `at_ms`, `<total>_per_s` for each total, the `gauges` as given, and for each
    of `means` (name -> (sum total, count total, scale)) the mean over the interval, None when the count did
    not move. A total that went down (the counters restarted) starts a fresh baseline."""

    def __init__(
        self, capacity: int = HISTORY_SAMPLES, means: dict[str, tuple[str, str, float]] | None = None
    ) -> None:
        self._samples: deque[Sample] = deque(maxlen=capacity)
        self._last: tuple[float, dict[str, float]] | None = None
        self._means = means or {}

    def record(self, now_s: float, at_ms: int, totals: dict[str, float], gauges: dict[str, int]) -> Sample:
        previous = self._last
        self._last = (now_s, dict(totals))
        averaged = {key for parts in self._means.values() for key in parts[:2]}
        fresh = previous is None or now_s <= previous[0] or any(totals[k] < previous[1][k] for k in totals)
        sample: Sample = {"at_ms": at_ms}
        last = None if fresh else previous
        for key in totals:
            if key not in averaged:
                sample[f"{key}_per_s"] = (
                    0.0 if last is None else (totals[key] - last[1][key]) / (now_s - last[0])
                )
        for name, (total, count, scale) in self._means.items():
            moved = 0.0 if last is None else totals[count] - last[1][count]
            sample[name] = scale * (totals[total] - last[1][total]) / moved if last and moved else None
        sample.update(gauges)
        self._samples.append(sample)
        return sample

    def samples(self) -> list[Sample]:
        return list(self._samples)


def registry_reader(registry: CollectorRegistry) -> Callable[..., float]:
    """`total(sample name, **labels)` over one pass through `registry` (0 for a sample it lacks)."""
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }

    def total(name: str, **labels: str) -> float:
        return values.get((name, tuple(sorted(labels.items()))), 0.0)

    return total


T = TypeVar("T")


class LastChainRead(Generic[T]):
    """A status model's last chain read and why the latest one failed. Reads run in a worker thread and a
    ChainError is kept and shown, never raised, so an unreachable chain shows as one instead of stalling the
    page; the node's and the validator's status share this."""

    def __init__(self) -> None:
        self.value: T | None = None
        self.error: str | None = None
        self.read_at_ms: int | None = None

    async def refresh(self, read: Callable[[], T]) -> None:
        try:
            self.value = await trio.to_thread.run_sync(read)
            self.error = None
        except ChainError as exc:
            self.error = str(exc)
        self.read_at_ms = time.time_ns() // 1_000_000

    def section(self) -> dict:
        """The `reachable`, `error` and `read_at_ms` fields of a status's chain section."""
        return {
            "reachable": self.value is not None and self.error is None,
            "error": self.error,
            "read_at_ms": self.read_at_ms,
        }


async def serve_status(
    sample: Callable[[], object],
    read_chain: Callable[[], Awaitable[None]] | None,
    *,
    interval: float,
    chain_interval: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call `sample` every `interval` seconds and `read_chain` every `chain_interval` (in its own task, so a
    slow chain never stalls the charts), until cancelled."""
    sample()
    async with trio.open_nursery() as nursery:
        if read_chain is not None:
            nursery.start_soon(_every, chain_interval, read_chain)
        task_status.started()
        while True:
            await trio.sleep(interval)
            sample()


async def _every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        await job()
        await trio.sleep(interval)


def read_counters(metrics: NodeMetrics) -> dict:
    """The node's totals as /metrics shows them, read back from its registry."""
    total = registry_reader(metrics.registry)

    sources = ("network", "local")
    return {
        "requests": {s: total("dolphin_node_requests_total", source=s) for s in sources},
        "refusals": {r: total("dolphin_node_refusals_total", reason=r) for r in REFUSAL_REASONS},
        "abandoned": total("dolphin_node_abandoned_total"),
        "tokens": {d: total("dolphin_node_tokens_total", direction=d) for d in ("prompt", "output")},
        "receipts_stored": total("dolphin_node_receipts_stored_total"),
        "ttft_sum": sum(total("dolphin_node_time_to_first_token_seconds_sum", source=s) for s in sources),
        "ttft_count": sum(total("dolphin_node_time_to_first_token_seconds_count", source=s) for s in sources),
        "accepting": bool(total("dolphin_node_accepting_network_requests")),
    }


class StrikeWatch:
    """Strikes against one node (`node_key`) signed by current validators; `validate` is the topic
    validator to subscribe to STRIKES_TOPIC with. `is_validator(address)` is None while the set is unknown.
    Valid strikes against other nodes are accepted (gossip carries them on) but not kept."""

    def __init__(
        self,
        node_key: bytes,
        domain: TypedDomain,
        is_validator: Callable[[bytes], bool | None],
        limit: int = STRIKES_KEPT,
    ) -> None:
        self.node_key = node_key
        self.domain = domain
        self.is_validator = is_validator
        self._strikes: dict[bytes, tuple[StrikeReport, int]] = {}  # signature -> (strike, received at ms)
        self._limit = limit
        self.validate = signed_message_validator(StrikeReport, authorise=self._admit, on_accept=self._record)

    def _admit(self, signed: envelope.Signed[StrikeReport]) -> Verdict:
        current = self.is_validator(eth_signer(signed.message, self.domain))  # SignatureError: rejected
        if current is None:  # the validator set is not known yet: neither trust nor punish
            return Verdict.IGNORE
        if not current:
            return Verdict.REJECT
        return Verdict.ACCEPT  # every current validator's strike travels on; only ours are kept

    def _record(self, signed: envelope.Signed[StrikeReport]) -> None:
        if signed.message.node_key != self.node_key or signed.message.signature in self._strikes:
            return
        self._strikes[signed.message.signature] = (signed.message, time.time_ns() // 1_000_000)
        while len(self._strikes) > self._limit:
            del self._strikes[next(iter(self._strikes))]

    def strikes(self) -> list[dict]:
        """Newest first, each with what the dashboard shows: who, why, how bad, and the evidence hash."""
        return [
            {
                "validator": "0x" + strike.validator.hex(),
                "reason": strike.reason,
                "severity": strike.severity,
                "epoch": strike.epoch,
                "evidence_hash": strike.evidence_hash.hex(),
                "evidence_items": len(strike.evidence),
                "received_at_ms": received,
            }
            for strike, received in reversed(self._strikes.values())
        ]


@dataclass(frozen=True)
class ChainFacts:
    """What the chain said about this node's operator at one block."""

    block: int
    registered: bool
    bond: int  # POD wei actively bonded
    rewards_claimed: int  # POD wei
    active_root_epoch: int
    active_root: bytes  # the rewards root operators claim against now (zero before the first)
    price_per_million: int  # the model's price, payment token units per 1M tokens
    emission_revenue_bps: int  # the share of paid revenue an epoch emits at most (ParamsRegistry)
    validators: frozenset[bytes]  # the current validator set's addresses

    def to_json(self) -> dict:
        """Amounts as decimal strings (wei does not fit a double in the browser)."""
        return {
            "block": self.block,
            "registered": self.registered,
            "bond": str(self.bond),
            "rewards_claimed": str(self.rewards_claimed),
            "active_root_epoch": self.active_root_epoch,
            "price_per_million": str(self.price_per_million),
            "emission_revenue_bps": self.emission_revenue_bps,
            "validators": len(self.validators),
        }


ChainRead = Callable[[], ChainFacts]


def claimable(tree: RewardsTree, operator: str, claimed: int) -> int:
    """What `operator` can claim now: its cumulative amount in the active root's tree, less what it claimed
    (the distributor pays cumulative amounts, so an earlier claim is never paid twice)."""
    amount = next((v for account, v in tree.amounts.items() if account.lower() == operator.lower()), 0)
    return max(amount - claimed, 0)


FetchTree = Callable[[int, bytes], Awaitable[RewardsTree]]


def estimated_reward(paid_tokens: int, facts: ChainFacts) -> dict:
    """What this epoch's paid receipts are worth so far, in the payment token's smallest units: the
    revenue they bring, and the most the node's base reward can be. docs/rewards.md, "Emission": base
    rewards are at most `emission_revenue_bps` of the paid revenue (valued in POD at the epoch's price),
    before the boost and the epoch cap; an unregistered node's receipts are billed but earn nothing."""
    revenue = paid_tokens * facts.price_per_million // PER_MILLION
    at_most = revenue * facts.emission_revenue_bps // BPS if facts.registered else 0
    return {"paid_revenue": str(revenue), "base_reward_value_at_most": str(at_most)}


def chain_reader(chain, binding: OperatorBinding | None, model: bytes) -> ChainRead:
    """Blocking reads of `chain` (a ChainClient) for the node's status; raise ChainError when it is down."""

    def facts() -> ChainFacts:
        block = read(lambda: chain.w3.eth.block_number, "reading the block number", rpc_url=chain.rpc_url)
        registered, bond, claimed = False, 0, 0
        if binding is not None:
            operator = chain.w3.to_checksum_address("0x" + binding.operator.hex())
            registered = chain.bonding.is_node_of(operator, binding.peer_id_hash, block)
            bond = chain.staked_pod.convert_to_assets(chain.bonding.active_bond_of(operator, block), block)
            claimed = chain.rewards_distributor.claimed_of(operator, block)
        root_epoch, root = chain.rewards_distributor.active_root(block)
        members = frozenset(bytes.fromhex(m[2:]) for m in chain.validator_set(block).members)
        return ChainFacts(
            block=block,
            registered=registered,
            bond=bond,
            rewards_claimed=claimed,
            active_root_epoch=root_epoch,
            active_root=root,
            price_per_million=chain.credits.price_of(model, block),
            emission_revenue_bps=read_params(chain, block).emission_revenue_bps,
            validators=members,
        )

    return facts


class NodeStatus:
    """The node's status model (module docstring). `serve` samples it; `snapshot()` is GET /status."""

    def __init__(
        self,
        *,
        peer_id: str,
        node_key: bytes,
        models: list[dict],
        engine: Engine,
        metrics: NodeMetrics,
        ledger: Ledger,
        host_facts: Callable[[], dict],
        operator: str | None,
        chain_url: str | None,
        read_chain: ChainRead | None = None,
        fetch_tree: FetchTree | None = None,
        strikes: StrikeWatch | None = None,
        draining: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peer_id = peer_id
        self.node_key = node_key
        self.models = models
        self.engine = engine
        self.metrics = metrics
        self.ledger = ledger
        self.host_facts = host_facts
        self.operator = operator
        self.chain_url = chain_url
        self.read_chain = read_chain
        self.fetch_tree = fetch_tree
        self.strike_watch = strikes
        self.draining = draining
        self.clock = clock
        self.history = RateHistory(means={"ttft_ms": ("ttft_sum", "ttft_count", 1000.0)})
        self.started_at_ms = time.time_ns() // 1_000_000
        self._chain: LastChainRead[ChainFacts] = LastChainRead()
        self._tree: RewardsTree | None = None  # the active root's, once fetched
        self._tree_root: bytes | None = None
        self._tree_error: str | None = None

    def is_validator(self, address: bytes) -> bool | None:
        """Whether `address` is in the validator set of the last chain read (None before the first)."""
        facts = self._chain.value
        return None if facts is None else address in facts.validators

    def sample(self) -> Sample:
        counters = read_counters(self.metrics)
        load = self.engine.load()
        totals = {
            "requests": sum(counters["requests"].values()),
            "output_tokens": counters["tokens"]["output"],
            "ttft_sum": counters["ttft_sum"],
            "ttft_count": counters["ttft_count"],
        }
        gauges = {"queued": load.waiting, "running": load.running}
        return self.history.record(self.clock(), time.time_ns() // 1_000_000, totals, gauges)

    async def refresh_chain(self) -> None:
        """Read the chain facts once (in a worker thread); a failure is kept and shown, never raised."""
        if self.read_chain is not None:
            await self._chain.refresh(self.read_chain)

    async def serve(
        self,
        *,
        interval: float = 1.0,
        chain_interval: float = 30.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Sample every `interval` seconds and read the chain (and then the rewards tree) every
        `chain_interval`, until cancelled (`serve_status`)."""
        reads = self._read_chain_and_tree if self.read_chain is not None else None
        await serve_status(
            self.sample, reads, interval=interval, chain_interval=chain_interval, task_status=task_status
        )

    async def _read_chain_and_tree(self) -> None:
        await self.refresh_chain()
        await self.refresh_tree()

    async def refresh_tree(self) -> None:
        """Fetch the active root's rewards tree from the validators when the root changed (the chain checks
        nothing here: `fetch_tree` checks the tree against the root); a failure is kept and shown."""
        facts = self._chain.value
        if self.fetch_tree is None or facts is None or facts.active_root_epoch == 0:
            return
        if facts.active_root == self._tree_root:
            return
        try:
            self._tree = await self.fetch_tree(facts.active_root_epoch, facts.active_root)
            self._tree_root, self._tree_error = facts.active_root, None
        except (TreeUnavailable, P2PError) as exc:
            self._tree_error = str(exc)

    def _claims(self) -> dict | None:
        facts = self._chain.value
        if facts is None or self.operator is None:
            return None
        tree = self._tree if self._tree_root == facts.active_root else None
        return {
            "root_epoch": facts.active_root_epoch,
            "claimed": str(facts.rewards_claimed),
            "available": str(claimable(tree, self.operator, facts.rewards_claimed))
            if tree is not None
            else None,
            "error": self._tree_error,
        }

    async def _epoch(self) -> dict:
        epoch = self.ledger.epoch_of(time.time_ns() // 1_000_000)
        summary = await self.ledger.epoch_summary(epoch)
        facts = self._chain.value
        estimate = estimated_reward(summary["paid_tokens"], facts) if facts is not None else None
        return {"epoch": epoch, "epoch_ms": self.ledger.epoch_ms, **summary, "estimated_reward": estimate}

    def _chain_section(self) -> dict:
        facts = self._chain.value
        return {
            "url": self.chain_url,
            "configured": self.read_chain is not None,
            **self._chain.section(),
            "facts": facts.to_json() if facts is not None else None,
        }

    async def snapshot(self) -> dict:
        """Everything the dashboard shows, as JSON-able data."""
        load = self.engine.load()
        counters = read_counters(self.metrics)
        host = self.host_facts()
        return {
            "kind": "node",
            "peer_id": self.peer_id,
            "node_key": self.node_key.hex(),
            "models": self.models,
            "engine": {
                "name": self.engine.name,
                "healthy": load.healthy,
                "running": load.running,
                "waiting": load.waiting,
                "capacity": load.capacity,
            },
            "serving": counters["accepting"] and load.healthy and not self.draining(),
            "draining": self.draining(),
            "network": host,
            "operator": self.operator,
            "registered": self.operator is not None,
            "chain": self._chain_section(),
            "claims": self._claims(),
            "counters": counters,
            "history": self.history.samples(),
            "receipts": await self._epoch(),
            "submissions": await self.ledger.submission_totals(),
            "strikes": self.strike_watch.strikes() if self.strike_watch is not None else None,
            "started_at_ms": self.started_at_ms,
            "now_ms": time.time_ns() // 1_000_000,
        }
