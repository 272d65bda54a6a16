"""The dashboards' chain reads against a real Anvil chain with the contracts: what a registered node, an
unregistered one and a validator see, and an unreachable chain shown as such instead of raised."""

import pytest
import trio

from chain.client import ChainClient
from chain.errors import ChainError
from chain.snapshot import read_params
from chain.testing import open_deployed_chain
from node.metrics import NodeMetrics
from node.registration import register_node
from node.status import NodeStatus, chain_reader
from validator.status import read_chain_view

pytestmark = [pytest.mark.process, pytest.mark.chain]

MODEL = b"\5" * 32


def test_the_chain_facts_of_a_registered_and_an_unregistered_node_and_of_a_validator(tmp_path):
    with open_deployed_chain(tmp_path / "chain") as chain:
        operator = ChainClient(chain.rpc_url, chain.deployment, chain.keys[4])
        binding = register_node(tmp_path / "node", operator)
        reader = ChainClient(chain.rpc_url, chain.deployment)

        facts = chain_reader(reader, binding, MODEL)()
        account = operator.status()
        assert facts.registered and facts.bond == account.active_bond_value
        assert facts.rewards_claimed == account.rewards_claimed == 0
        assert facts.price_per_million == reader.call("Credits", "priceOf", MODEL)
        assert facts.emission_revenue_bps == read_params(reader).emission_revenue_bps > 0
        members = reader.validator_set().members
        assert members and facts.validators == frozenset(bytes.fromhex(m[2:]) for m in members)
        assert facts.to_json()["bond"] == str(facts.bond)  # wei as text: a double would round it

        unregistered = chain_reader(reader, None, MODEL)()
        assert not unregistered.registered and unregistered.bond == 0
        assert unregistered.validators == facts.validators

        validator = ChainClient(chain.rpc_url, chain.deployment, chain.keys[1])  # a dev genesis validator
        view = read_chain_view(validator)
        assert view.validator_weight > 0 and view.bond == validator.status().active_bond_value
        money = validator.money_status()
        assert (view.revenue, view.pod_bought_back) == (money.revenue, money.pod_bought_back)
    # The chain is gone: the same reader now fails with a ChainError, which the status keeps and shows.
    with pytest.raises(ChainError):
        chain_reader(reader, binding, MODEL)()
    status = NodeStatus(
        peer_id="peer",
        node_key=b"\1" * 32,
        models=[],
        engine=None,  # not read by a chain refresh
        metrics=NodeMetrics(),
        ledger=None,
        host_facts=dict,
        operator="0x" + binding.operator.hex(),
        chain_url=chain.rpc_url,
        read_chain=chain_reader(reader, binding, MODEL),
    )
    trio.run(status.refresh_chain)
    section = status._chain_section()
    assert section["configured"] and not section["reachable"] and section["facts"] is None
    assert chain.rpc_url in section["error"] and "does not answer" in section["error"]
    assert status.is_validator(b"\0" * 20) is None  # no set known: strikes are neither trusted nor punished
