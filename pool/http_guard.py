"""Who may talk to the gateway's HTTP API from a browser: nobody, unless the operator says so.

A gateway spends its operator's credit, and a web page can make the visitor's browser send requests to
127.0.0.1. Three rules close that door (the rules a local JSON API needs against cross-site requests):

1. Content-Type: a POST must say `application/json`. Browsers send text/plain, form and multipart bodies
   cross-site without asking; a JSON body makes them ask first (a CORS preflight), which rule 3 answers no.
2. Origin: a request carrying an `Origin` header comes from a web page; it is refused unless that origin
   is in `allowed_origins` (CORS is off unless configured; when it is, preflights of those origins are
   answered).
3. Host: on a loopback bind, the `Host` header must name a loopback host. DNS rebinding points a name the
   attacker owns at 127.0.0.1, so the browser calls it same-origin, but its Host header still carries the
   attacker's name.

Refusals are OpenAI-shaped errors (403, 415). `is_loopback` also decides, in the config, that a bind
other machines can reach needs an API key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from starlette.middleware.cors import CORSMiddleware

from pool.openai_api import OpenAIError

__all__ = ["guard_http", "is_loopback"]

_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an IP, IPv6 with or without brackets) can only be reached from here."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host part of a Host header (`name:port`, `[v6]:port`)."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Guard:
    """The ASGI middleware applying the module's three rules before the app sees a request."""

    def __init__(self, app: Callable, *, loopback_bind: bool, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.loopback_bind = loopback_bind
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict) -> OpenAIError | None:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        host = headers.get("host", "")
        if self.loopback_bind and not is_loopback(_host_name(host)):
            refused = f"Host {host!r} is not a loopback name: this gateway serves 127.0.0.1 only"
            return OpenAIError(403, refused, "permission_error")
        origin = headers.get("origin")
        if origin is not None and origin not in self.allowed_origins:
            refused = f"requests from web pages ({origin}) are refused unless allowed_origins names it"
            return OpenAIError(403, refused, "permission_error")
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if scope["method"] == "POST" and content_type != "application/json":
            return OpenAIError(415, "send the body as JSON, with Content-Type: application/json")
        return None


def guard_http(app: Callable, *, bind_host: str, allowed_origins: tuple[str, ...] = ()) -> Callable:
    """`app` behind the module's rules; with `allowed_origins`, CORS answers for those origins only."""
    guarded: Callable = _Guard(app, loopback_bind=is_loopback(bind_host), allowed_origins=allowed_origins)
    if allowed_origins:
        guarded = CORSMiddleware(
            guarded,
            allow_origins=list(allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return guarded
