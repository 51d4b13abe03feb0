"""The sign-up form's CSRF defence in headless Chromium, against the system started as processes.

A form left open past the tokens' maximum age, and another site's page whose
form posts to frontend-web: from another host (a cross-site post, which
Chromium marks ``Sec-Fetch-Site: cross-site`` and sends without the
``SameSite=Strict`` cookie) and from another port of the same host (same site,
so the cookie goes along, but ``Origin`` names the other port).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from frontend_web.routes import CROSS_ORIGIN_TITLE
from frontend_web.signup import EXPIRED_FORM
from tests.browser.conftest import VIEWPORT
from tests.browser.other_site import BUTTON, OtherSite, other_site
from tests.support.system import ALICE, ALICE_PASSWORD, System

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

# Short, so the test waits only this long for a form to go stale; long enough
# that the fresh form, filled in and submitted at once, is well within it.
MAX_AGE_SECONDS = 3
WAIT_LIMIT_SECONDS = 30


def fill_and_submit(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign up").click()


def hidden_fields(page: Page) -> dict[str, str]:
    """The hidden fields of the sign-up form shown on ``page``."""
    return {
        name: page.locator(f"input[name={name}]").input_value()
        for name in ("csrf_token", "idempotency_key")
    }


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {WAIT_LIMIT_SECONDS} s"
        time.sleep(0.05)


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context: its own cookies."""
    context = chromium.new_context(viewport=VIEWPORT)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def site() -> Iterator[tuple[OtherSite, int]]:
    with other_site() as served:
        yield served


@pytest.mark.frontend_env(FRONTEND_WEB_CSRF_MAX_AGE_SECONDS=MAX_AGE_SECONDS)
def test_stale_form_is_refused_and_a_fresh_one_given(
    watched_page: Page, system: System, tmp_path: Path
) -> None:
    page = watched_page
    page.goto(system.frontend.url)
    # The token is dated in whole seconds, at the latest now; frontend-web refuses
    # it once more than MAX_AGE_SECONDS whole seconds have passed since then.
    stale_from = int(time.time()) + MAX_AGE_SECONDS + 1
    page.get_by_label("Username").fill(ALICE)
    page.get_by_label("Password").fill(ALICE_PASSWORD)
    wait_until(lambda: time.time() >= stale_from, "the form going stale")

    with page.expect_response(f"{system.frontend.url}/signup") as answer:
        page.get_by_role("button", name="Sign up").click()

    assert answer.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text(EXPIRED_FORM)
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("Username")).to_have_value(ALICE)
    page.screenshot(path=tmp_path / "form-expired.png")
    assert system.account_status(1) == 404

    # The fresh form: the username is kept, the password typed again.
    page.get_by_label("Password").fill(ALICE_PASSWORD)
    page.get_by_role("button", name="Sign up").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Account created")
    assert system.account_status(1) == 200


def test_cross_site_post_is_refused(
    context: BrowserContext, system: System, site: tuple[OtherSite, int], tmp_path: Path
) -> None:
    other, port = site
    own_tab = context.new_page()
    own_tab.goto(system.frontend.url)
    other.post_to(
        f"{system.frontend.url}/signup",
        {**hidden_fields(own_tab), "username": ALICE, "password": ALICE_PASSWORD},
    )
    # localhost is another site than 127.0.0.1 (and still this machine's loopback).
    other_tab = context.new_page()
    other_tab.goto(f"http://localhost:{port}/")

    with other_tab.expect_request(f"{system.frontend.url}/signup") as posted:
        other_tab.get_by_role("button", name=BUTTON).click()

    headers = posted.value.all_headers()
    assert headers["sec-fetch-site"] == "cross-site"
    assert headers["origin"] == f"http://localhost:{port}"
    assert "csrf=" not in headers.get("cookie", "")  # SameSite=Strict kept it back
    response = posted.value.response()
    assert response is not None
    assert response.status == 403
    expect(other_tab.get_by_role("heading", level=1)).to_have_text(CROSS_ORIGIN_TITLE)
    other_tab.screenshot(path=tmp_path / "cross-site-post.png")
    assert system.account_status(1) == 404


def test_post_from_another_origin_of_the_same_site_is_refused_though_its_token_is_valid(
    context: BrowserContext, system: System, site: tuple[OtherSite, int]
) -> None:
    other, port = site
    own_tab = context.new_page()
    own_tab.goto(system.frontend.url)
    # The other origin's page carries this browser's own valid token, which no
    # real attacker could read: only Origin tells the two posts apart.
    other.post_to(
        f"{system.frontend.url}/signup",
        {**hidden_fields(own_tab), "username": ALICE, "password": ALICE_PASSWORD},
    )
    other_tab = context.new_page()
    other_tab.goto(f"http://127.0.0.1:{port}/")

    with other_tab.expect_request(f"{system.frontend.url}/signup") as posted:
        other_tab.get_by_role("button", name=BUTTON).click()

    headers = posted.value.all_headers()
    assert headers["sec-fetch-site"] == "same-site"
    assert headers["origin"] == f"http://127.0.0.1:{port}"
    assert "csrf=" in headers["cookie"]  # same site: the SameSite=Strict cookie went along
    response = posted.value.response()
    assert response is not None
    assert response.status == 403
    expect(other_tab.get_by_role("heading", level=1)).to_have_text(CROSS_ORIGIN_TITLE)
    assert system.account_status(1) == 404

    # The same form, cookie and token, sent from frontend-web's own page, is accepted.
    with own_tab.expect_request(f"{system.frontend.url}/signup") as own_post:
        fill_and_submit(own_tab, ALICE, ALICE_PASSWORD)

    own_headers = own_post.value.all_headers()
    assert own_headers["origin"] == system.frontend.url
    assert own_headers["sec-fetch-site"] == "same-origin"
    expect(own_tab.get_by_role("heading", level=1)).to_have_text("Account created")
    assert system.account_status(1) == 200
