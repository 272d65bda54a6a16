"""The validator daemon's parts: checking nodes, strikes and bans, and the money loop (receipts, settlement,
keeper).

The daemon and its settings:
- `daemon`: `serve_validator(config)`, what `dolphin validator` runs
- `config`: `ValidatorConfig`, its TOML file, environment variables and the dev profile
- `metrics`, `status`: Prometheus metrics, the /status model behind the dashboard
- `state`, `evidence`: what must outlive a crash, in SQLite (judgements; evidence and settlements)

Checking nodes:
- `reference`: the reference model answers are checked against
- `prompts`, `challenges`: the prompts and the sampled requests drawn from them, shaped like client traffic
- `sampler`: sending challenges over the network as any client would
- `challenge_wallets`: the many wallets challenges pay from, and a plan to fund them like users' wallets
- `answers`: a node's answer held together by what the node signed
- `checks`: the checks of one answer (pure); `calibration`: their thresholds per model
- `suspicion`: how likely each node cheats, and so how often it is sampled
- `audit`: `dolphin validator audit`, one node checked now without a chain

Strikes, bans and slashing:
- `strikes`: from failed checks to strikes, exclusion, bans and slashing decisions (the rules, as data)
- `service`: `Validator`, the judgement itself: answers in; strikes, bans, standings and decisions out
- `gossip`: validators of the strike and ban topics (current validators only; bans need several)
- `chain`: what the validator reads and does on chain (`SlashingChain`)

The money loop:
- `admission`, `receipts`: which receipts enter the store, nodes' submissions and validators' syncs
- `closing`: an epoch's closing block and the chain read there
- `settlement`: pure epoch settlement: receipts -> debits, base rewards, the engine, the rewards root
- `election`: the next validator set every peer computes from the same chain state
- `quorum`: validators' signatures on roots and debit batches, and when a quorum holds
- `epochs`: `serve_settlement`, the loop that settles, signs, relays and activates, epoch after epoch
- `keeper`: the buyback keeper (revenue -> POD for stakers)

- `errors`: `ValidatorError` and its subclasses
- `processes`: `validator_process`, `dolphin validator` as an OS process (the demo, tests)
- `testing`: a node's answer made in process, and gossip between validators in one process (tests)
"""

from validator.errors import SettlementError, ValidatorError
from validator.settlement import (
    Carry,
    DebitBatch,
    EpochMarket,
    EpochSettlement,
    ReceiptFacts,
    receipt_commitment,
    receipt_facts,
    settle_epoch,
)

__all__ = [
    "Carry",
    "DebitBatch",
    "EpochMarket",
    "EpochSettlement",
    "ReceiptFacts",
    "SettlementError",
    "ValidatorError",
    "receipt_commitment",
    "receipt_facts",
    "settle_epoch",
]
