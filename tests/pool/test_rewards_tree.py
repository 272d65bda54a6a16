"""Claimers fetch an epoch's rewards tree from any validator peer (REWARDS_TREE_PROTOCOL), page by page,
and trust none of them: a tree that does not make the chain's root is refused, and a peer that sends
garbage or nothing is passed over."""

import contextlib

import pytest
import trio

from chain.address import checked_address
from chain.merkle import RewardsTree
from p2p.testing import open_host_group
from pool.errors import TreeUnavailable
from pool.validator_peers import fetch_rewards_tree
from protocols.ids import REWARDS_TREE_PROTOCOL, VALIDATORS_RECORD
from protocols.messages import MAX_TREE_PAGE, RewardsTreeRequest
from protocols.schema import decode_message, encode_message
from validator.epochs import rewards_tree_page

pytestmark = pytest.mark.integration

EPOCH = 7
# More accounts than one page holds, so the claimer pages through them.
AMOUNTS = {checked_address(f"0x{n:040x}"): 10**18 + n for n in range(1, MAX_TREE_PAGE + 300)}
TREE = RewardsTree.build(AMOUNTS)


def _serving(tree: RewardsTree):  # type: ignore[no-untyped-def]
    async def handle(stream) -> None:  # type: ignore[no-untyped-def]
        request = decode_message(await stream.read_message(256), RewardsTreeRequest)
        await stream.write_message(encode_message(rewards_tree_page(tree, request)))
        await stream.close()

    return handle


async def _garbage(stream) -> None:  # type: ignore[no-untyped-def]
    await stream.read_message(256)
    await stream.write_message(b"\x93not a page")
    await stream.close()


@contextlib.asynccontextmanager
async def _validators(tmp_path, *handlers):  # type: ignore[no-untyped-def]
    """A bootstrap peer, a claimer, and one peer per handler announced under VALIDATORS_RECORD."""
    async with open_host_group(tmp_path, 2 + len(handlers)) as hosts, trio.open_nursery() as nursery:
        _, claimer, *validators = hosts
        for host, handler in zip(validators, handlers, strict=True):
            host.set_stream_handler(REWARDS_TREE_PROTOCOL, handler)
            await nursery.start(host.dht.serve_record, VALIDATORS_RECORD, host.advertised_addrs, 600)
        yield claimer
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_the_tree_comes_from_whichever_validator_serves_the_chains_root(tmp_path):
    forged = RewardsTree.build({**AMOUNTS, "0x" + "ee" * 20: 10**24})  # pays someone extra
    async with _validators(tmp_path, _garbage, _serving(forged), _serving(TREE)) as claimer:
        fetched = await fetch_rewards_tree(claimer, EPOCH, TREE.root, timeout=60)
    assert fetched.root == TREE.root and dict(fetched.amounts) == AMOUNTS


@pytest.mark.trio
async def test_no_validator_with_the_right_root_is_a_clear_error(tmp_path):
    forged = RewardsTree.build({"0x" + "ee" * 20: 10**24})
    async with _validators(tmp_path, _serving(forged), _serving(None)) as claimer:
        with pytest.raises(TreeUnavailable, match=f"rewards tree of epoch {EPOCH}"):
            await fetch_rewards_tree(claimer, EPOCH, TREE.root, timeout=8)


def test_pages_split_the_tree_in_ascending_accounts():
    first = rewards_tree_page(TREE, RewardsTreeRequest(epoch=EPOCH))
    assert first.total == len(AMOUNTS) and len(first.accounts) == MAX_TREE_PAGE and first.root == TREE.root
    rest = rewards_tree_page(TREE, RewardsTreeRequest(epoch=EPOCH, after=first.accounts[-1]))
    assert len(first.accounts) + len(rest.accounts) == len(AMOUNTS)
    assert list(first.accounts + rest.accounts) == sorted(first.accounts + rest.accounts)
    assert rewards_tree_page(None, RewardsTreeRequest(epoch=EPOCH)).total == 0
