"""The validator's dashboard in a real headless browser, served by a real `dolphin validator` process that
samples a real node (tiny model) through a relay: the page loads without a console error, shows the
validator's peer id, and its challenge chart moves once a node has joined and answered a challenge."""

import httpx
import pytest
import trio

from node.processes import node_process
from p2p.processes import relay_process
from tests.browser import canvas_number, canvas_pixels, open_page, wait_for
from tests.validator.processes import started_processes
from validator.daemon import write_wallet
from validator.processes import validator_process

pytestmark = [pytest.mark.process, pytest.mark.slow]

FAST_SAMPLING = ("--base-per-hour", "3600", "--max-per-hour", "7200", "--concurrency", "1")


def test_the_dashboard_shows_the_validator_and_its_chart_moves_after_a_challenge(tmp_path, tiny_model_dir):
    with started_processes() as started:
        relay = relay_process(tmp_path / "relay")
        started.append(relay)
        trio.run(relay.wait_ready)
        write_wallet(tmp_path / "validator" / "validator.key")
        validator = validator_process(
            tmp_path / "validator", tiny_model_dir, "--bootstrap", relay.addr, *FAST_SAMPLING
        )
        started.append(validator)
        trio.run(validator.wait_ready, 240)
        url = validator.ready["dashboard"]
        with open_page(url) as (page, errors):
            wait_for(lambda: page.inner_text("#peer-id") == validator.peer_id, what="the peer id")
            wait_for(lambda: canvas_number(page, "#chart-challenges", "points") >= 2, what="two samples")
            assert page.inner_text("#state") == "validating"
            assert "No node sampled yet." in page.inner_text("#nodes")
            assert canvas_number(page, "#chart-challenges", "peak") == 0
            before = canvas_pixels(page, "#chart-challenges")

            node = node_process(tmp_path / "node", tiny_model_dir, "--bootstrap", relay.addr)
            started.append(node)
            trio.run(node.wait_ready, 180)
            # The validator finds the node in the pool and challenges it on its own schedule (a few a
            # minute at FAST_SAMPLING); the answered challenge shows in the chart's five-minute window.
            wait_for(
                lambda: canvas_number(page, "#chart-challenges", "peak") > 0, timeout=180, what="a challenge"
            )
            assert canvas_pixels(page, "#chart-challenges") != before
            wait_for(lambda: "good" in page.inner_text("#nodes"), timeout=30, what="the node's standing")
            assert "No strikes." in page.inner_text("#strikes")
            assert "No chain" in page.inner_text("#epochs")
            assert errors == []
        status = httpx.get(url.replace("/dashboard", "/status"), timeout=10).json()
        assert status["peer_id"] == validator.peer_id and status["validator"] == validator.ready["validator"]
        assert status["counters"]["challenges"]["passed"] >= 1
        assert status["checks"]["checks"] >= 1 and status["checks"]["failed"] == 0
        assert status["money"] is None and status["chain"]["configured"] is False
