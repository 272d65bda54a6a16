"""The rewards Merkle tree: OpenZeppelin-compatible construction, proofs, verification, serialisation."""

import json

import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.errors import AddressError, MerkleError
from chain.merkle import Claim, RewardsTree, hash_pair, leaf_hash, process_proof, verify
from tests.examples import examples

pytestmark = pytest.mark.unit

FLIPPED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"

addresses = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())
amounts = st.integers(min_value=0, max_value=2**256 - 1)
balances = st.dictionaries(addresses, amounts, min_size=1, max_size=40)


def hand_leaf(address: str, amount: int) -> bytes:
    # abi.encode(address, uint256): two 32-byte words, the address left-padded with zeros.
    encoded = bytes(12) + bytes.fromhex(address[2:]) + amount.to_bytes(32, "big")
    return keccak(keccak(encoded))


def hand_pair(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


def test_openzeppelin_readme_vector():
    # The example of @openzeppelin/merkle-tree's README (StandardMerkleTree.of with ["address", "uint256"]);
    # its published dump: root, the two leaves' node order, and their tree indices.
    tree = RewardsTree.build(
        {
            "0x1111111111111111111111111111111111111111": 5_000_000_000_000_000_000,
            "0x2222222222222222222222222222222222222222": 2_500_000_000_000_000_000,
        }
    )
    assert [node.hex() for node in tree.nodes] == [
        "d4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77",
        "eb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283",
        "b92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc",
    ]
    dump = tree.to_standard_dump()
    assert dump["values"] == [
        {"value": ["0x1111111111111111111111111111111111111111", "5000000000000000000"], "treeIndex": 1},
        {"value": ["0x2222222222222222222222222222222222222222", "2500000000000000000"], "treeIndex": 2},
    ]
    assert tree.proof("0x1111111111111111111111111111111111111111") == (tree.nodes[2],)


def test_three_leaf_root_by_hand():
    values = {"0x" + "ab" * 20: 7, "0x" + "01" * 20: 10**18, "0x" + "fe" * 20: 2**255}
    s0, s1, s2 = sorted(hand_leaf(address, amount) for address, amount in values.items())
    # Five nodes: leaves s0, s1, s2 at indices 4, 3, 2; node 1 joins 3 and 4; the root joins 1 and 2.
    expected_root = hand_pair(hand_pair(s1, s0), s2)
    tree = RewardsTree.build(values)
    assert tree.root == expected_root
    by_leaf = {hand_leaf(address, amount): address for address, amount in values.items()}
    assert tree.proof(by_leaf[s0]) == (s1, s2)
    assert tree.proof(by_leaf[s1]) == (s0, s2)
    assert tree.proof(by_leaf[s2]) == (hand_pair(s0, s1),)


def test_single_leaf_tree_is_its_leaf_with_empty_proof():
    address = "0x" + "42" * 20
    tree = RewardsTree.build({address: 123})
    assert tree.root == hand_leaf(address, 123)
    assert tree.proof(address) == ()
    assert verify((), tree.root, leaf_hash(address, 123))


def test_two_leaf_tree_each_proof_is_the_other_leaf():
    a, b = "0x" + "11" * 20, "0x" + "22" * 20
    tree = RewardsTree.build({a: 1, b: 2})
    assert tree.root == hand_pair(hand_leaf(a, 1), hand_leaf(b, 2))
    assert tree.proof(a) == (hand_leaf(b, 2),)
    assert tree.proof(b) == (hand_leaf(a, 1),)


@settings(max_examples=examples(40), deadline=None)
@given(balances)
def test_every_proof_verifies(values):
    tree = RewardsTree.build(values)
    for address, amount in values.items():
        claim = tree.claim(address)
        assert claim.amount == amount
        assert claim.verify(tree.root)
        assert process_proof(tree.proof(address), leaf_hash(address, amount)) == tree.root


@settings(max_examples=examples(40), deadline=None)
@given(balances, st.data())
def test_tampered_claims_fail(values, data):
    tree = RewardsTree.build(values)
    address = data.draw(st.sampled_from(sorted(values)))
    claim = tree.claim(address)
    bumped = (claim.amount + 1) % 2**256
    assert not Claim(claim.account, bumped, claim.leaf, claim.proof).verify(tree.root)
    stranger = data.draw(addresses.filter(lambda other: other.lower() != address.lower()))
    assert not Claim(stranger, claim.amount, claim.leaf, claim.proof).verify(tree.root)
    if claim.proof:
        position = data.draw(st.integers(0, len(claim.proof) - 1))
        forged = list(claim.proof)
        forged[position] = keccak(forged[position])
        assert not verify(forged, tree.root, claim.leaf)
        assert not verify(claim.proof[:-1], tree.root, claim.leaf)
    assert not verify(claim.proof, keccak(tree.root), claim.leaf)


@settings(max_examples=examples(30), deadline=None)
@given(balances, st.randoms(use_true_random=False))
def test_root_does_not_depend_on_input_order_or_case(values, rng):
    items = list(values.items())
    rng.shuffle(items)
    shuffled = {address.upper().replace("0X", "0x"): amount for address, amount in items}
    assert RewardsTree.build(shuffled).root == RewardsTree.build(values).root


def test_inner_node_cannot_pass_for_a_leaf():
    # Double hashing: an inner node of a 4-leaf tree, offered as a leaf with the rest of the path, fails
    # unless the leaf hash is recomputed from a real (account, amount).
    values = {"0x" + f"{i:02x}" * 20: i for i in range(1, 5)}
    tree = RewardsTree.build(values)
    inner = tree.nodes[1]
    assert verify((tree.nodes[2],), tree.root, inner)  # raw verify accepts the inner node...
    for address, amount in values.items():  # ...but no claim derives that leaf
        assert leaf_hash(address, amount) != inner


def test_json_round_trip_and_tamper_detection():
    values = {"0x" + f"{i:02x}" * 20: i * 10**18 for i in range(1, 8)}
    tree = RewardsTree.build(values)
    text = tree.to_json()
    again = RewardsTree.from_json(text)
    assert again.root == tree.root and dict(again.amounts) == dict(tree.amounts)
    document = json.loads(text)
    assert document["root"] == "0x" + tree.root.hex()
    assert document["total"] == str(sum(values.values()))
    some = next(iter(document["claims"]))
    document["claims"][some]["amount"] = "1"
    with pytest.raises(MerkleError, match="root or total"):
        RewardsTree.from_json(json.dumps(document))
    document = json.loads(text)
    document["claims"][some]["proof"][0] = "0x" + "00" * 32
    with pytest.raises(MerkleError, match="does not match"):
        RewardsTree.from_json(json.dumps(document))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "at least one"),
        ({"0x" + "ab" * 20: -1}, "amount"),
        ({"0x" + "ab" * 20: 2**256}, "amount"),
        ({"0x" + "ab" * 20: True}, "amount"),
        ({"0x" + "ab" * 20: 1, "0x" + "AB" * 20: 2}, "twice"),
    ],
)
def test_bad_inputs_raise_merkle_error(values, message):
    with pytest.raises(MerkleError, match=message):
        RewardsTree.build(values)


def test_a_bad_address_in_a_tree_is_refused_by_the_one_address_check():
    # Mixed case, last letter flipped from the EIP-55 example 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed.
    for bad, message in (("0x1234", "not an Ethereum address"), (FLIPPED, "checksum")):
        with pytest.raises(AddressError, match=message):
            RewardsTree.build({bad: 1})
        with pytest.raises(AddressError, match=message):
            leaf_hash(bad, 1)


def test_proof_of_absent_account_and_bad_documents():
    tree = RewardsTree.build({"0x" + "11" * 20: 1})
    with pytest.raises(MerkleError, match="not in this tree"):
        tree.proof("0x" + "22" * 20)
    for text in ("nope", "[]", json.dumps({"format": "other"})):
        with pytest.raises(MerkleError):
            RewardsTree.from_json(text)


def test_hash_pair_is_commutative():
    a, b = keccak(b"a"), keccak(b"b")
    assert hash_pair(a, b) == hash_pair(b, a) == keccak(min(a, b) + max(a, b))


@pytest.mark.unit
def test_the_leaf_is_the_abi_encoding_double_hashed():
    from eth_abi import encode
    from eth_utils import keccak

    from chain.merkle import leaf_hash

    for account, amount in (("0x" + "ab" * 20, 0), ("0x" + "01" * 20, 2**256 - 1), ("0x" + "00" * 20, 12345)):
        expected = keccak(keccak(encode(["address", "uint256"], [account, amount])))
        assert leaf_hash(account, amount) == expected
