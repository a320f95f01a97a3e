"""Headless Chromium (the system's ``chromium``) driven by Playwright, with the network blocked.

Tests using :func:`chromium` are skipped, with the reason, where Playwright or a Chromium is missing
(``pip install playwright``; Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Opened:
    """A review page opened from disk, with every script error and every request it made."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def rows(self) -> Any:
        return self.page.locator("[data-path]")

    def thumbs_loaded(self) -> list[int]:
        """The natural width of every thumbnail of the rows shown, once all have finished loading."""
        script = "Array.from(document.querySelectorAll('[data-path] img'))"
        self.page.wait_for_function(f"{script}.every(i => i.complete)", timeout=15_000)
        return self.page.evaluate(f"{script}.map(i => i.naturalWidth)")


def open_review(browser: Any, folder: Path, *, height: int = 3000) -> Opened:
    """Open ``folder/index.html`` offline, every non-file request aborted; wait for the first rows."""
    context = browser.new_context(offline=True, accept_downloads=True, viewport={"width": 1400, "height": height})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page = context.new_page()
    opened = Opened(page)
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda err: opened.errors.append(str(err)))
    page.on("request", lambda r: opened.requests.append(r.url))
    page.goto((folder / "index.html").resolve().as_uri())
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000)
    return opened


def offline_only(opened: Opened) -> None:
    """No script error, and nothing but local files (and the page's own blobs) was requested."""
    assert opened.errors == []
    assert all(url.split(":", 1)[0] in ("file", "blob", "data") for url in opened.requests), opened.requests


def export(opened: Opened, to: Path) -> Path:
    with opened.page.expect_download() as download:
        opened.page.click("#export")
    assert download.value.suggested_filename == "decisions.csv"
    download.value.save_as(to)
    return to
