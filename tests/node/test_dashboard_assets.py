"""The dashboards' files: every one the pages load ships in the package, and none reaches elsewhere."""

import re
from importlib import resources

import pytest

from node.dashboard import ASSETS, PAGES, dashboard_routes, page_html

pytestmark = pytest.mark.unit

FILES = resources.files("node.dashboard")


async def _no_status() -> dict:
    return {}


@pytest.mark.parametrize("page", PAGES)
def test_each_page_loads_only_assets_shipped_in_the_package(page):
    html = page_html(page).decode()
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert loaded and all(url.startswith("/dashboard/") for url in loaded), loaded
    assert {url.removeprefix("/dashboard/") for url in loaded} <= set(ASSETS)
    assert f"/dashboard/{page}.js" in loaded and f"<title>Dolphin {page}</title>" in html
    assert len(dashboard_routes(page, _no_status)) == 3


def test_no_asset_calls_out_or_writes_markup():
    for name in (*ASSETS, "page.html", *(f"{page}.html" for page in PAGES)):
        text = FILES.joinpath(name).read_text()
        # No CDN and no third-party call: operators run offline, and the CSP would block it anyway.
        assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", "")), name
        # Text from the network is set as text, never parsed as HTML.
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, name


def test_an_unknown_page_is_refused():
    with pytest.raises(ValueError, match="no dashboard page 'gateway'"):
        dashboard_routes("gateway", _no_status)
