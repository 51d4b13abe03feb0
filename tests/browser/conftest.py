"""Headless Chromium, driven by Playwright, against the whole system started as processes.

Playwright's own browser download is not used: the tests launch the Chromium
found at ``FRONTEND_WEB_TEST_CHROMIUM`` (default ``/usr/bin/chromium``, Debian's
``chromium`` package).

pytest-playwright's fixtures are not used either: its Playwright lives for the
whole session, and a started sync Playwright keeps an event loop running in
the main thread, so every later test calling ``asyncio.run()`` would fail.
Here Playwright is stopped when this package's tests are done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import sync_playwright

from tests.support.system import System, running_system

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Page,
        Request,
        Response,
        ViewportSize,
    )

    from tests.support.tls import TestTls

CHROMIUM = os.environ.get("FRONTEND_WEB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# A laptop-sized window, for readable screenshots.
VIEWPORT: ViewportSize = {"width": 960, "height": 760}
# Chromium reports every answer of 400 or more this way, pages included; the
# pages' statuses are intended, and assets are checked through their responses.
_HTTP_STATUS_REPORT = "Failed to load resource: the server responded with a status of"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so that ``--strict-markers`` accepts it wherever it is declared."""
    config.addinivalue_line("markers", "browser: tests driving a real browser (Chromium)")
    config.addinivalue_line(
        "markers", "frontend_env(**settings): environment variables added to frontend-web's"
    )


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for this package's tests."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package, "
            "or set FRONTEND_WEB_TEST_CHROMIUM to a Chromium binary"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def system(request: pytest.FixtureRequest, tmp_path: Path, test_tls: TestTls) -> Iterator[System]:
    """A fresh system per test: its own databases, so account ids start at 1.

    Both internal hops run over HTTPS, each caller with its client token;
    frontend-web's limit on sign-ups is one no test reaches. A test marked
    ``frontend_env(NAME="value", ...)`` gets frontend-web started with those
    variables in its environment.
    """
    marker = request.node.get_closest_marker("frontend_env")
    frontend_env = {name: str(value) for name, value in marker.kwargs.items()} if marker else {}
    with running_system(tmp_path, test_tls, frontend_env=frontend_env) as started:
        yield started


class Watch:
    """What a browser context's pages did besides rendering.

    Every request they made, every asset that failed, every console error.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.failed_assets: list[str] = []
        self.console_errors: list[str] = []

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_response(self, response: Response) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            self.failed_assets.append(f"{response.status} {response.url}")

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(_HTTP_STATUS_REPORT):
            self.console_errors.append(message.text)


@pytest.fixture
def watched_page(chromium: Browser, system: System) -> Iterator[Page]:
    """A page in a fresh browser context, checked after the test.

    Neither it nor any other page of its context fetched anything from
    elsewhere, failed to load an asset, or logged an error (such as a CSP
    violation).
    """
    context = chromium.new_context(viewport=VIEWPORT)
    watch = Watch()
    context.on("request", watch.on_request)
    context.on("response", watch.on_response)
    context.on("console", watch.on_console)
    try:
        yield context.new_page()
    finally:
        context.close()
    foreign = [url for url in watch.requests if not url.startswith(f"{system.frontend.url}/")]
    assert not foreign, f"the pages fetched from elsewhere: {foreign}"
    assert not watch.failed_assets, f"assets failed to load: {watch.failed_assets}"
    assert not watch.console_errors, f"console errors (CSP violations?): {watch.console_errors}"
