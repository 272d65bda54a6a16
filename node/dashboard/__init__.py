"""The daemons' dashboard: one page per daemon, served from files shipped in this package.

`dashboard_routes(page, snapshot)` gives the routes a daemon adds to its local HTTP app:

    GET /dashboard              the page: the head both pages share (`page.html`) around the page's own
                                header and sections (`node.html` or `validator.html`)
    GET /dashboard/<asset>      its scripts, style sheet and icon, from a fixed list (nothing else is read)
    GET /status                 `await snapshot()` as JSON: the daemon's status model, what the page draws

Operators run offline, so every asset is in the package: the charts are drawn by our own small script on
a canvas, with no third-party code and no CDN. The page's Content-Security-Policy allows only its own
origin, so nothing it shows (a peer's text included) can run as script or call elsewhere.
"""

from __future__ import annotations

import string
from collections.abc import Awaitable, Callable
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["PAGES", "StatusSource", "dashboard_routes", "page_html"]

StatusSource = Callable[[], Awaitable[dict]]
PAGES = ("node", "validator")
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "node.js": "text/javascript; charset=utf-8",
    "validator.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def page_html(page: str) -> bytes:
    """`page`'s document: page.html (the head and the scripts both pages load) with the page's name and its
    body (`<page>.html`) filled in, so the head is written once."""
    frame = string.Template(_read("page.html").decode())
    return frame.substitute(page=page, body=_read(f"{page}.html").decode()).encode()


def dashboard_routes(page: str, snapshot: StatusSource) -> list[Route]:
    """The routes for `page` (one of PAGES); `snapshot()` returns the status model as JSON data."""
    if page not in PAGES:
        raise ValueError(f"no dashboard page {page!r}")
    html = page_html(page)
    assets = {name: _read(name) for name in ASSETS}

    async def dashboard(request: Request) -> Response:
        return Response(html, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return JSONResponse({"error": f"no dashboard asset {name!r}"}, 404)
        return Response(assets[name], media_type=ASSETS[name], headers=SECURITY_HEADERS)

    async def status(request: Request) -> Response:
        return JSONResponse(await snapshot(), headers={"Cache-Control": "no-store"})

    return [
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/dashboard/{name}", asset, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
    ]
