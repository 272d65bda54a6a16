"""The node's dashboard in a real headless browser, served by a real `dolphin node` process with the tiny
model: the page loads without a console error, shows the node's peer id, and its charts move once the
node answers a request."""

import httpx
import pytest
import trio

from node.processes import node_process
from p2p import HostConfig, open_host
from protocols import envelope
from protocols.eth import EthAccount
from protocols.ids import STRIKES_TOPIC
from protocols.keys import Identity, peer_id_from_text, public_key_from_peer_id
from protocols.messages import StrikeReport, eth_sign, evidence_hash
from tests.browser import canvas_number, canvas_pixels, open_page, wait_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_model_dir):
    process = node_process(tmp_path_factory.mktemp("node"), tiny_model_dir)
    try:
        trio.run(process.wait_ready, 180)
        yield process
    except BaseException:
        print(process.log_tail(4000))
        raise
    finally:
        process.stop()


def test_the_dashboard_shows_the_node_and_its_charts_move_after_an_answer(node):
    api = node.ready["local_api"]
    with open_page(f"{api}/dashboard") as (page, errors):
        wait_for(lambda: page.inner_text("#peer-id") == node.peer_id, what="the peer id")
        wait_for(lambda: canvas_number(page, "#chart-tokens", "points") >= 2, what="two samples")
        assert page.inner_text("#serving") == "serving"
        assert "dolphin-tiny-llama" in page.inner_text("#status")
        assert canvas_number(page, "#chart-tokens", "peak") == 0
        assert canvas_number(page, "#chart-requests", "peak") == 0
        before = canvas_pixels(page, "#chart-tokens")

        body = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 12}
        answer = httpx.post(f"{api}/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] > 0

        wait_for(lambda: canvas_number(page, "#chart-tokens", "peak") > 0, timeout=15, what="tokens/s")
        wait_for(lambda: canvas_number(page, "#chart-requests", "peak") > 0, timeout=15, what="requests/s")
        assert canvas_pixels(page, "#chart-tokens") != before
        wait_for(lambda: "local answers\n1" in page.inner_text("#served"), what="the answer counted")
        assert errors == []


def test_status_is_the_same_data_as_metrics_and_ready_json(node):
    api = node.ready["local_api"]
    status = httpx.get(f"{api}/status", timeout=10).json()
    assert status["peer_id"] == node.peer_id
    assert status["models"] == [{"name": node.ready["model_name"], "id": node.ready["model"]}]
    assert status["engine"]["name"] == node.ready["engine"] and status["engine"]["healthy"]
    assert status["network"]["listen_addrs"] == node.ready["listen_addrs"]
    assert status["registered"] is False and status["chain"]["configured"] is False
    assert status["strikes"] is None  # no chain: no validator set to trust strikes from
    metrics = httpx.get(f"{api}/metrics", timeout=10).text
    served = sum(status["counters"]["requests"].values())
    assert (
        f'dolphin_node_requests_total{{source="local"}} {status["counters"]["requests"]["local"]}' in metrics
    )
    assert served == status["counters"]["requests"]["local"] + status["counters"]["requests"]["network"]


def test_the_page_allows_only_its_own_assets(node):
    api = node.ready["local_api"]
    page = httpx.get(f"{api}/dashboard", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: operators run offline
    assert httpx.get(f"{api}/dashboard/node.js", timeout=10).status_code == 200
    missing = httpx.get(f"{api}/dashboard/..%2Fdaemon.py", timeout=10)
    assert missing.status_code == 404


def _strike(chain, key_index: int, node_peer_id: str) -> StrikeReport:
    """A strike against the node signed by dev key `key_index` under the chain's Slashing domain."""
    from chain.client import ChainClient

    wallet = EthAccount(bytes.fromhex(chain.keys[key_index].removeprefix("0x")))
    evidence = (b"a countersigned receipt", b"the answer it contradicts")
    return eth_sign(
        StrikeReport,
        wallet,
        ChainClient(chain.rpc_url, chain.deployment).domain("Slashing"),
        validator=wallet.address,
        node_key=public_key_from_peer_id(peer_id_from_text(node_peer_id)),
        operator=b"\0" * 20,
        model=b"\5" * 32,
        epoch=1,
        reason="too_slow" if key_index == 1 else "wrong_model",
        severity=3,
        evidence_hash=evidence_hash(evidence),
        evidence=evidence,
    )


async def _publish_strike(data_dir, node, strike: StrikeReport) -> None:
    """From a peer of its own: connect to the node and publish once the node's subscription is known."""
    async with open_host(HostConfig(data_dir)) as host:
        await host.connect(node.ready["listen_addrs"][0])
        with trio.fail_after(20):
            while node.peer_id not in host.gossip.topic_peers(STRIKES_TOPIC):
                await trio.sleep(0.1)
        await host.gossip.publish(STRIKES_TOPIC, envelope.sign(strike, Identity(host.signing_seed())))
        await trio.sleep(1)  # delivered before the connection closes


@pytest.mark.chain
def test_a_registered_node_on_a_chain_shows_its_bond_and_only_validators_strikes(
    tmp_path, tiny_model_dir, deployed_chain
):
    """Also an attack: a peer that is not a validator publishes a strike against the node over gossip; the
    operator's dashboard never shows it, and shows the strike a current validator publishes next."""
    from chain.client import ChainClient
    from node.registration import register_node

    operator = ChainClient(deployed_chain.rpc_url, deployed_chain.deployment, deployed_chain.keys[4])
    binding = register_node(tmp_path / "node", operator)
    bond = operator.status().active_bond_value
    chain_args = ("--rpc-url", deployed_chain.rpc_url, "--deployment", str(deployed_chain.path))
    process = node_process(tmp_path / "node", tiny_model_dir, *chain_args)
    try:
        trio.run(process.wait_ready, 180)
        with open_page(process.ready["dashboard"]) as (page, errors):
            wait_for(lambda: "reachable" in page.inner_text("#network"), what="the chain read")
            network = page.inner_text("#network")
            assert "0x" + binding.operator.hex() in network and "registered\nyes" in network
            assert f"{bond // 10**18:,} POD" in network
            assert "No strikes: validators are satisfied." in page.inner_text("#strikes")
            claims = page.inner_text("#claims")
            assert "claimed so far\n0 POD" in claims
            assert "available to claim\nno rewards root yet" in claims
            assert "needs the chain" not in page.inner_text("#epoch")

            forged = _strike(deployed_chain, 6, process.peer_id)  # dev key 6 is no validator
            trio.run(_publish_strike, tmp_path / "forger", process, forged)
            real = _strike(deployed_chain, 1, process.peer_id)  # dev key 1 is a genesis validator
            trio.run(_publish_strike, tmp_path / "validator", process, real)
            wait_for(lambda: "too_slow" in page.inner_text("#strikes"), what="the validator's strike")
            strikes = page.inner_text("#strikes")
            assert real.evidence_hash.hex() in strikes and "0x" + real.validator.hex() in strikes
            assert "wrong_model" not in strikes and "0x" + forged.validator.hex() not in strikes
            assert "below the model's minimum speed" in strikes  # what to do about it
            assert errors == []
    except BaseException:
        print(process.log_tail(4000))
        raise
    finally:
        process.stop()
