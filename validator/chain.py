"""What the validator reads and does on chain, over `chain.client.ChainClient` (blocking: call from a
thread, `trio.to_thread.run_sync`).

- the current validator set (`ValidatorQuorum.validators`) and the quorum fraction, which decide whose
  strikes count and when a slashing decision has enough signatures;
- the network's strike rules and awards (`Slashing.strikeRules`);
- whether a node is bound to the operator a ban names, or was within the unbound period
  (`Bonding.isSlashableNodeOf`: unregistering does not escape a strike), whether that operator has
  anything to slash (`Bonding.slashableOf`) and the share every validator's decision takes
  (`Slashing.slashBps`, one governed value, so decisions and awards agree);
- what catching a node forfeits at a block (`forfeit`), from which awards are paid;
- submitting a quorum-signed decision (`Slashing.slash`), unless its evidence slashed the offender already.
"""

from __future__ import annotations

from chain.client import ChainClient, ExplainedRevert
from chain.quorum import QuorumRule
from chain.transactions import TransactionFailed
from protocols.eth import TypedDomain, keccak256
from protocols.keys import peer_id_from_public_key
from validator.strikes import DecisionFields

__all__ = ["SlashingChain"]


class SlashingChain:
    """The chain calls of slashing, for one validator's wallet."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client

    def domain(self, contract: str = "Slashing") -> TypedDomain:
        return self.client.domain(contract)

    def quorum_rule(self) -> QuorumRule:
        return self.client.quorum_rule()

    def slash_bps(self, block: int | str = "latest") -> int:
        """`Slashing.slashBps()`: the share of the slashable bond a decision takes (within maxSlashBps)."""
        return self.client.slashing.slash_bps(block)

    def strike_rules(self, block: int | str = "latest") -> tuple:
        """`Slashing.strikeRules()`: reasons, severities, ban points, ban validators, window, awards."""
        return self.client.slashing.strike_rules(block)

    def slashable(self, operator: bytes, node_key: bytes, block: int | str = "latest") -> bool:
        """Whether a strike on the node of `node_key` can slash `operator` (bound now or within the unbound
        period, `Bonding.isSlashableNodeOf`) and `operator` has bonded stake to slash."""
        account = self.client.w3.to_checksum_address("0x" + operator.hex())
        peer_hash = keccak256(peer_id_from_public_key(node_key))
        if not self.client.bonding.is_slashable_node_of(account, peer_hash, block):
            return False
        return self.client.bonding.slashable_of(account, block) > 0

    def forfeit(self, operator: bytes, slash_bps: int, block: int) -> tuple[int, int]:
        """What a slash of `operator` at `slash_bps` (the chain's `slash_bps(block)`) takes at `block`, in
        POD wei, and the reporter's cut of it."""
        account = self.client.w3.to_checksum_address("0x" + operator.hex())
        shares = self.client.bonding.slashable_of(account, block) * slash_bps // 10_000
        taken = self.client.staked_pod.convert_to_assets(shares, block)
        return taken, taken * self.client.slashing.reporter_reward_bps(block) // 10_000

    def slash(self, decision: DecisionFields, signatures: list[bytes], *, attempts: int = 3) -> str | None:
        """Submit `decision`; returns the transaction hash, or None when its evidence was used already.

        Every validator of the quorum may submit: when another one's transaction lands first, ours reverts
        (at estimation, or on chain when both were in flight), which is success. A transaction can also
        revert on chain with its gas estimate nearly spent (measured: 297,846 of 301,382 gas), the inner
        calls of Bonding.slash starved by the 63/64 rule; it is estimated and sent again, up to `attempts`.
        """
        offender = self.client.w3.to_checksum_address("0x" + decision.offender.hex())
        for attempt in range(attempts):
            if self.client.slashing.is_evidence_used(offender, decision.evidence_hash):
                return None
            try:
                receipt = self.client.slash(decision.as_tuple(), signatures)
            except (ExplainedRevert, TransactionFailed):
                if attempt + 1 == attempts:
                    raise
                continue
            return receipt.transactionHash.hex()
        return None
