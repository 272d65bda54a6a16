"""The gateway's browser guard (pool.http_guard) in front of a small app, through httpx's ASGI transport."""

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from pool.http_guard import guard_http, is_loopback

pytestmark = pytest.mark.unit

SPENT = []


async def _spend(request):
    SPENT.append(await request.body())
    return JSONResponse({"spent": True})


def _app(bind_host: str, origins: tuple[str, ...] = ()) -> Starlette:
    guard = Middleware(guard_http, bind_host=bind_host, allowed_origins=origins)
    return Starlette(middleware=[guard], routes=[Route("/v1/chat/completions", _spend, methods=["POST"])])


async def _post(app, *, base="http://127.0.0.1:8080", **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as http:
        return await http.post("/v1/chat/completions", **kwargs)


@pytest.mark.trio
async def test_cross_site_requests_from_a_web_page_spend_nothing():
    """Attack: a page the operator visits posts to 127.0.0.1 as text/plain (no CORS preflight), or from
    its own origin, or through a rebound DNS name: each is refused before the app runs."""
    SPENT.clear()
    app = _app("127.0.0.1")
    body = b'{"model": "m", "messages": [{"role": "user", "content": "spend"}]}'
    plain = await _post(app, content=body, headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]["message"]
    foreign = await _post(
        app, content=body, headers={"content-type": "application/json", "origin": "https://evil.example"}
    )
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["error"]["message"]
    rebound = await _post(
        app, base="http://evil.example:8080", content=body, headers={"content-type": "application/json"}
    )
    assert rebound.status_code == 403 and "loopback" in rebound.json()["error"]["message"]
    assert SPENT == []
    for base in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        served = await _post(app, base=base, json={"model": "m"})
        assert served.status_code == 200, base
    assert len(SPENT) == 3


@pytest.mark.trio
async def test_configured_origins_get_cors_and_a_public_bind_takes_any_host():
    app = _app("0.0.0.0", ("https://app.example",))
    preflight = None
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw.example"
    ) as http:
        preflight = await http.options(
            "/v1/chat/completions",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        allowed = await http.post("/v1/chat/completions", json={}, headers={"origin": "https://app.example"})
        other = await http.post("/v1/chat/completions", json={}, headers={"origin": "https://evil.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert (
        allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    )
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    # Without configured origins there is no CORS at all: a preflight gets no allow header.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app("127.0.0.1")), base_url="http://127.0.0.1"
    ) as http:
        bare = await http.options(
            "/v1/chat/completions",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
    assert "access-control-allow-origin" not in bare.headers


def test_loopback_names():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "evil.example", "localhost.evil"))
