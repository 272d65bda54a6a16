"""Settlement from receipts: verified, de-duplicated, attributed to registered operators, paid pro rata."""

import pytest
from eth_utils import to_checksum_address

from chain.merkle import leaf_hash, verify
from chain.rewards import POD, RewardParams
from chain.snapshot import ChainSnapshot
from protocols import testing as pt
from protocols.errors import ProtocolError
from protocols.eth import keccak256
from protocols.keys import peer_id_from_public_key
from validator import SettlementError, base_rewards, settle_epoch, work_by_operator

# Settlement keys accounts by their EIP-55 checksummed address, as the chain reports them.
OPERATOR_A = to_checksum_address("0x" + "aa" * 20)
OPERATOR_B = to_checksum_address("0x" + "bb" * 20)


def _countersigned(node_n: int, client_n: int = 1, tokens: tuple[str, ...] = ("one", "two"), prompt="hi"):
    client, node = pt.exchange_pair(node_n=node_n, client_n=client_n, prompt=prompt)
    client.receive(node.header())
    for text in tokens:
        client.receive(node.chunk(text, (len(text),)))
    client.receive(
        node.end("stop", tokens_in=5, started_at_ms=1_700_000_000_000, first_token_ms=3, duration_ms=9)
    )
    return client.countersigned_receipt()


def _peer_hash(node_n: int) -> bytes:
    return keccak256(peer_id_from_public_key(pt.identity(node_n).public_key))


@pytest.mark.unit
def test_work_counts_each_answer_once_for_the_registered_operator():
    a1 = _countersigned(2, prompt="first")
    a2 = _countersigned(2, prompt="second", tokens=("x",))
    b1 = _countersigned(3)
    unregistered = _countersigned(4)
    operators = {_peer_hash(2): OPERATOR_A, _peer_hash(3): OPERATOR_B}
    work = work_by_operator([a1, a2, a1, b1, unregistered], operators)
    assert work == {OPERATOR_A: (5 + 2) + (5 + 1), OPERATOR_B: 5 + 2}


@pytest.mark.unit
def test_a_forged_receipt_is_refused():
    receipt = bytearray(_countersigned(2))
    receipt[-5] ^= 1
    with pytest.raises(ProtocolError):
        work_by_operator([bytes(receipt)], {_peer_hash(2): OPERATOR_A})


@pytest.mark.unit
def test_emission_is_split_pro_rata_rounding_down():
    assert base_rewards({OPERATOR_A: 2, OPERATOR_B: 1}, 100) == {OPERATOR_A: 66, OPERATOR_B: 33}
    with pytest.raises(SettlementError, match="nothing to settle"):
        base_rewards({}, 100)


@pytest.mark.unit
def test_two_epochs_accumulate_into_a_tree_whose_proofs_verify():
    params = RewardParams()
    snapshot = ChainSnapshot(
        block=10,
        timepoint=1_000,
        params=params,
        active_bonds={OPERATOR_A: 1_000 * POD, OPERATOR_B: 0},
        registered=frozenset({OPERATOR_A, OPERATOR_B}),
        slashed=frozenset(),
    )
    first = settle_epoch(1, snapshot, {OPERATOR_A: 60 * POD, OPERATOR_B: 40 * POD})
    # No snapshot yet: multiplier 1, so the reward is the base reward.
    assert first.cumulative == {OPERATOR_A: 60 * POD, OPERATOR_B: 40 * POD}
    second = settle_epoch(2, snapshot, {OPERATOR_A: 10 * POD}, previous=first)
    assert second.cumulative[OPERATOR_A] == 60 * POD + second.paid(OPERATOR_A)
    assert second.cumulative[OPERATOR_B] == 40 * POD
    assert second.close.accounts[OPERATOR_A].state.closed_epochs == 2
    for account, amount in second.cumulative.items():
        assert verify(second.tree.proof(account), second.tree.root, leaf_hash(account, amount))
