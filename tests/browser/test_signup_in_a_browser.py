"""Signing up in headless Chromium, through frontend-web, user-service and auth-service.

Each scenario starts the three services as processes, with fresh databases,
and saves a screenshot in its own ``tmp_path``. With ``UPDATE_DOCS_SCREENSHOT=1``,
the empty form is also saved as ``docs/signup.png`` for the README.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.system import ALICE, ALICE_PASSWORD, WRONG_PASSWORD, System

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "signup.png"
UNAVAILABLE = "Sign-up is unavailable right now, please try again shortly"


def fill_and_submit(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign up").click()


def expect_account_created(page: Page, username: str) -> int:
    """Check the page shows the created account, and return its id."""
    expect(page.get_by_role("heading", level=1)).to_have_text("Account created")
    expect(page.locator("dd").first).to_have_text(username)
    return int(page.locator("dd").nth(1).inner_text())


def expect_problem(page: Page, message: str) -> None:
    expect(page.get_by_role("alert")).to_contain_text(message)
    expect(page).to_have_title(re.compile(r"^Error: "))
    # The password typed is never sent back to the browser.
    expect(page.get_by_label("Password")).to_have_value("")


def test_sign_up_creates_the_account(watched_page: Page, system: System, tmp_path: Path) -> None:
    page = watched_page
    page.goto(system.frontend.url)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=DOCS_SCREENSHOT, clip={"x": 0, "y": 0, "width": 960, "height": 600})

    fill_and_submit(page, ALICE, ALICE_PASSWORD)

    account_id = expect_account_created(page, ALICE)
    page.screenshot(path=tmp_path / "account-created.png")
    assert system.account_status(account_id) == 200


def test_wrong_password_is_refused(watched_page: Page, system: System, tmp_path: Path) -> None:
    page = watched_page
    page.goto(system.frontend.url)

    fill_and_submit(page, ALICE, WRONG_PASSWORD)

    expect_problem(page, "Invalid credentials")
    expect(page.get_by_label("Username")).to_have_value(ALICE)
    page.screenshot(path=tmp_path / "invalid-credentials.png")
    assert system.account_status(1) == 404


def test_taken_username_is_reported_beside_the_field(
    watched_page: Page, system: System, tmp_path: Path
) -> None:
    first_tab = watched_page
    second_tab = first_tab.context.new_page()
    first_tab.goto(system.frontend.url)
    second_tab.goto(system.frontend.url)

    fill_and_submit(first_tab, ALICE, ALICE_PASSWORD)
    expect_account_created(first_tab, ALICE)
    fill_and_submit(second_tab, ALICE, ALICE_PASSWORD)

    expect_problem(second_tab, "That username is already taken")
    username = second_tab.get_by_label("Username")
    expect(username).to_have_attribute("aria-invalid", "true")
    expect(username).to_have_accessible_description(re.compile("That username is already taken"))
    second_tab.screenshot(path=tmp_path / "username-taken.png")
    assert (system.account_status(1), system.account_status(2)) == (200, 404)


def test_auth_service_down_then_back(watched_page: Page, system: System, tmp_path: Path) -> None:
    page = watched_page
    page.goto(system.frontend.url)
    system.auth.stop()

    fill_and_submit(page, ALICE, ALICE_PASSWORD)

    expect_problem(page, UNAVAILABLE)
    page.screenshot(path=tmp_path / "auth-service-down.png")
    assert system.account_status(1) == 404

    system.auth.start()
    # The username is kept; the password is typed again.
    expect(page.get_by_label("Username")).to_have_value(ALICE)
    page.get_by_label("Password").fill(ALICE_PASSWORD)
    page.get_by_role("button", name="Sign up").click()

    account_id = expect_account_created(page, ALICE)
    page.screenshot(path=tmp_path / "auth-service-back.png")
    assert system.account_status(account_id) == 200


def test_double_submit_creates_one_account(
    watched_page: Page, system: System, tmp_path: Path
) -> None:
    page = watched_page
    page.goto(system.frontend.url)
    page.get_by_label("Username").fill(ALICE)
    page.get_by_label("Password").fill(ALICE_PASSWORD)
    fields: dict[str, str | float | bool] = {
        name: page.locator(f"input[name={name}]").input_value()
        for name in ("csrf_token", "idempotency_key", "username", "password")
    }
    with page.expect_request(f"{system.frontend.url}/signup") as posted:
        page.get_by_role("button", name="Sign up").dblclick()
    assert posted.value.method == "POST"

    account_id = expect_account_created(page, ALICE)
    page.screenshot(path=tmp_path / "double-submit.png")

    # A browser retry of the same form (same cookie, same fields) gets the same account.
    replay = page.request.post(f"{system.frontend.url}/signup", form=fields)
    assert replay.status == 200
    assert f"<dd>{account_id}</dd>" in replay.text()
    assert (system.account_status(account_id), system.account_status(account_id + 1)) == (
        200,
        404,
    )


def test_racing_duplicates_of_one_form_create_one_account(
    watched_page: Page, system: System, tmp_path: Path
) -> None:
    page = watched_page
    page.goto(system.frontend.url)
    fields = {
        "csrf_token": page.locator("input[name=csrf_token]").input_value(),
        "idempotency_key": page.locator("input[name=idempotency_key]").input_value(),
        "username": ALICE,
        "password": ALICE_PASSWORD,
    }
    cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}

    # Three copies of the same submission at once, as from a flaky network's retries:
    # user-service runs one; the others wait for it and get its account.
    def post() -> httpx.Response:
        return httpx.post(f"{system.frontend.url}/signup", data=fields, cookies=cookies)

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(lambda _: post(), range(3)))

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert len({re.findall(r"<dd>(\d+)</dd>", answer.text)[0] for answer in answers}) == 1
    # The person's own submit of that form shows the same account.
    page.get_by_label("Username").fill(ALICE)
    page.get_by_label("Password").fill(ALICE_PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    account_id = expect_account_created(page, ALICE)
    page.screenshot(path=tmp_path / "racing-duplicates.png")
    assert (system.account_status(account_id), system.account_status(account_id + 1)) == (
        200,
        404,
    )
