"""A real headless browser for the dashboards' tests: Debian's Chromium driven by Playwright's sync API.

    with open_page(url) as (page, errors):
        page.wait_for_function(...)
    assert errors == []

`errors` collects what a person would see in the browser's console as errors: console.error messages,
uncaught exceptions, and failed requests (a missing asset, a blocked script). Playwright's sync API runs
its own asyncio loop: call it from plain test functions, or from a worker thread under trio. That loop is
made under asyncio's default policy, not trio-asyncio's (which the daemons' modules install on import,
and whose loops cannot be driven the way Playwright drives its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"

__all__ = ["CHROMIUM", "canvas_number", "canvas_pixels", "open_page", "wait_for"]


@contextlib.contextmanager
def open_page(url: str, *, timeout_ms: float = 30_000) -> Iterator[tuple[Page, list[str]]]:
    """`url` loaded in a fresh headless Chromium; closed when the block ends."""
    errors: list[str] = []
    installed = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        manager = sync_playwright()
        playwright = manager.__enter__()
    finally:
        asyncio.set_event_loop_policy(installed)
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1800})
            page.set_default_timeout(timeout_ms)
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
            page.on(
                "response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
            )
            page.goto(url, wait_until="load")
            yield page, errors
        finally:
            browser.close()
    finally:
        manager.__exit__(None, None, None)


def wait_for(condition: Callable[[], bool], *, timeout: float = 30.0, what: str = "the page") -> None:
    """Poll `condition` (which reads the page) until it holds. The dashboards forbid eval in their
    Content-Security-Policy, which Playwright's wait_for_function needs, so the waiting is done here."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def canvas_number(page: Page, selector: str, key: str) -> float:
    """A number a dashboard chart records on its canvas (`data-points`, `data-peak`, `data-last`)."""
    value = page.get_attribute(selector, f"data-{key}")
    return float(value) if value else 0.0


def canvas_pixels(page: Page, selector: str) -> str:
    """What a canvas shows now, as a data URL: two draws compare equal only if they look the same."""
    return page.eval_on_selector(selector, "canvas => canvas.toDataURL()")
