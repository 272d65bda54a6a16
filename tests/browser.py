"""A real headless browser for the dashboards' tests: Debian's Chromium driven by Playwright's sync API.

    with open_page(url) as (page, errors):
        page.wait_for_function(...)
    assert errors == []

`errors` collects what a person would see in the browser's console as errors: console.error messages,
uncaught exceptions, and failed requests (a missing asset, a blocked script). Playwright's sync API runs
its own event loop: call it from plain test functions, or from a worker thread under trio.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"

__all__ = ["CHROMIUM", "canvas_pixels", "open_page"]


@contextlib.contextmanager
def open_page(url: str, *, timeout_ms: float = 30_000) -> Iterator[tuple[Page, list[str]]]:
    """`url` loaded in a fresh headless Chromium; closed when the block ends."""
    errors: list[str] = []
    with sync_playwright() as playwright:
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


def canvas_pixels(page: Page, selector: str) -> str:
    """What a canvas shows now, as a data URL: two draws compare equal only if they look the same."""
    return page.eval_on_selector(selector, "canvas => canvas.toDataURL()")
