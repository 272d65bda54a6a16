"""The node's dashboard in a real headless browser, served by a real `dolphin node` process with the tiny
model: the page loads without a console error, shows the node's peer id, and its charts move once the
node answers a request."""

import httpx
import pytest
import trio

from node.testing import node_process
from tests.browser import canvas_pixels, open_page

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


def _peak(page, chart: str) -> float:
    return float(page.eval_on_selector(f"#{chart}", "canvas => canvas.dataset.peak || '0'"))


def test_the_dashboard_shows_the_node_and_its_charts_move_after_an_answer(node):
    api = node.ready["local_api"]
    with open_page(f"{api}/dashboard") as (page, errors):
        page.wait_for_function(
            "id => document.getElementById('peer-id').textContent === id", arg=node.peer_id
        )
        page.wait_for_function("document.getElementById('chart-tokens').dataset.points >= 2")
        assert page.inner_text("#serving") == "serving"
        assert "dolphin-tiny-llama" in page.inner_text("#status")
        assert _peak(page, "chart-tokens") == 0 and _peak(page, "chart-requests") == 0
        before = canvas_pixels(page, "#chart-tokens")

        body = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 12}
        answer = httpx.post(f"{api}/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        tokens = answer.json()["usage"]["completion_tokens"]
        assert tokens > 0

        page.wait_for_function("document.getElementById('chart-tokens').dataset.peak > 0", timeout=15_000)
        page.wait_for_function("document.getElementById('chart-requests').dataset.peak > 0")
        assert canvas_pixels(page, "#chart-tokens") != before
        assert page.inner_text("#served").split("local answers")[1].split()[0] == "1"
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
