"""Each service's ``/docs`` in headless Chromium: Swagger UI, served by the service, offline.

auth-service and user-service run as processes over HTTPS, as deployed. The
page, its script, style and icon and the document it shows all come from the
service itself, without a client token: every request to any other host is
refused and recorded, and none is made. Swagger UI renders the service's
operations from the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORT
from tests.support.system import AUTH_SERVICE, USER_SERVICE, System, running_system

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Browser, Page, Response, Route

    from tests.support.tls import TestTls

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

RENDER_TIMEOUT_MS = 30_000
OPERATIONS = {
    USER_SERVICE: {
        ("POST", "/accounts"),
        ("GET", "/accounts/{account_id}"),
        ("GET", "/livez"),
        ("GET", "/readyz"),
    },
    AUTH_SERVICE: {("POST", "/auth/validate"), ("GET", "/livez"), ("GET", "/readyz")},
}


@dataclass
class Offline:
    """A browser context's requests: those to the service let through, any other refused.

    Attributes:
        origin: The service's origin, such as ``https://127.0.0.1:8000``.
        refused: Each request to another host, refused.
        fetched: Each request let through.
        failed: Each answer of 400 or more to a request for an asset.
    """

    origin: str
    refused: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == self.origin:
            self.fetched.append(url)
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("blockedbyclient")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, test_tls: TestTls) -> Iterator[System]:
    """auth-service and user-service, over HTTPS; frontend-web is not started."""
    folder: Path = tmp_path_factory.mktemp("docs-in-a-browser")
    with running_system(folder, test_tls, services=(AUTH_SERVICE, USER_SERVICE)) as system:
        yield system


def _rendered_operations(page: Page) -> set[tuple[str, str]]:
    blocks = page.locator(".opblock")
    return {
        (
            blocks.nth(index).locator(".opblock-summary-method").inner_text().strip(),
            blocks.nth(index).locator(".opblock-summary-path").get_attribute("data-path") or "",
        )
        for index in range(blocks.count())
    }


@pytest.mark.parametrize("service", [USER_SERVICE, AUTH_SERVICE])
def test_docs_show_the_operations_with_nothing_from_another_host(
    chromium: Browser, services: System, service: str, tmp_path: Path
) -> None:
    origin = (services.users if service == USER_SERVICE else services.auth).url
    offline = Offline(origin)
    context = chromium.new_context(viewport=VIEWPORT, ignore_https_errors=True)
    try:
        context.route("**/*", offline.route)
        context.on("response", offline.on_response)
        page = context.new_page()
        page.goto(f"{origin}/docs")

        expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            service, timeout=RENDER_TIMEOUT_MS
        )
        expect(page.locator(".opblock")).to_have_count(
            len(OPERATIONS[service]), timeout=RENDER_TIMEOUT_MS
        )
        rendered = _rendered_operations(page)
        page.screenshot(path=tmp_path / f"{service}-docs.png", full_page=True)
    finally:
        context.close()

    assert rendered == OPERATIONS[service]
    assert not offline.refused, f"the page asked other hosts for: {offline.refused}"
    assert not offline.failed, f"answers of 400 or more: {offline.failed}"
    fetched = {urlsplit(url).path for url in offline.fetched}
    assert {"/docs", "/openapi.json"} <= fetched, fetched
    assert any(path.endswith("swagger-ui-bundle.js") for path in fetched), fetched
