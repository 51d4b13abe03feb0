"""The busy page: what a sign-up shows while the system is overloaded, from real HTTP answers."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.factory import create_app
from frontend_web.settings import Settings
from frontend_web.signup import busy
from tests.frontend_web.conftest import OTHER_PASSWORD, PASSWORD, Form, FormBrowser
from tests.frontend_web.html import Element, parse
from tests.frontend_web.stand_in_user_service import Gate, Reply, created, overloaded
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.frontend_web.stand_in_user_service import StandInUserService


def alert_text(page: Element) -> str:
    [summary] = page.find_all(role="alert")
    return summary.text


def assert_busy_page(
    response: httpx.Response, form: Form, retry_after: str, message: str
) -> Element:
    assert response.status_code == 503
    assert response.headers["retry-after"] == retry_after
    assert response.headers["cache-control"] == "no-store"
    page = parse(response.text)
    assert alert_text(page) == f"There is a problem {message}"
    # The account may be on its way: the form shown again carries the same key.
    assert page.field_value("idempotency_key") == form.idempotency_key
    assert page.by_id("username").get("value") == "alice"
    assert PASSWORD not in response.text
    assert PASSWORD not in str(response.headers)
    assert page.by_id("password").get("value") is None
    return page


@pytest.mark.parametrize(
    ("retry_after", "header", "message"),
    [
        ("7", "7", "Sign-up is busy, please try again in 7 seconds"),
        ("1", "1", "Sign-up is busy, please try again in 1 second"),
        ("0", "1", "Sign-up is busy, please try again in 1 second"),
        (None, "1", "Sign-up is busy, please try again in a moment"),
    ],
    ids=["7", "1", "0", "absent"],
)
def test_overloaded_user_service_shows_the_busy_page(
    visitor: FormBrowser,
    user_service: StandInUserService,
    retry_after: str | None,
    header: str,
    message: str,
) -> None:
    form = visitor.open_form()
    user_service.script(overloaded(retry_after))

    response = visitor.submit(form=form)

    assert_busy_page(response, form, header, message)
    assert "auth-service" not in response.text
    assert [r.idempotency_key for r in user_service.received] == [form.idempotency_key]


def test_the_busy_pages_form_can_be_resubmitted_safely(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    user_service.script(overloaded("2"), created(8, replayed=True))
    busy_page = parse(visitor.submit(form=form).text)

    again = visitor.submit(form=Form.of(busy_page))

    assert again.status_code == 200
    assert "Account created" in again.text
    assert [r.idempotency_key for r in user_service.received] == [form.idempotency_key] * 2


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (None, "Sign-up is busy, please try again in a moment"),
        (0, "Sign-up is busy, please try again in 1 second"),
        (1, "Sign-up is busy, please try again in 1 second"),
        (2, "Sign-up is busy, please try again in 2 seconds"),
        (120, "Sign-up is busy, please try again in 120 seconds"),
    ],
)
def test_busy_message_counts_whole_seconds(seconds: int | None, message: str) -> None:
    assert busy(seconds) == message


# --- the time budget -----------------------------------------------------------------------


def submit_with_headers(
    visitor: FormBrowser, form: Form, headers: dict[str, str]
) -> httpx.Response:
    fields = {
        "username": "alice",
        "password": PASSWORD,
        "csrf_token": form.csrf_token,
        "idempotency_key": form.idempotency_key,
    }
    return visitor.client.post("/signup", data=fields, headers=headers)


def test_user_service_gets_the_timeout_as_its_budget(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    visitor.submit()

    assert [r.budget_ms for r in user_service.received] == ["10000"]


def test_a_callers_budget_is_passed_on_what_is_left_of_it(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    response = submit_with_headers(visitor, visitor.open_form(), {"X-Time-Budget-Ms": "3000"})

    assert response.status_code == 200
    [received] = user_service.received
    assert received.budget_ms is not None
    assert 0 < int(received.budget_ms) <= 3000


def test_a_spent_budget_shows_the_busy_page_without_calling(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()

    response = submit_with_headers(visitor, form, {"X-Time-Budget-Ms": "10"})

    assert_busy_page(response, form, "1", "Sign-up is busy, please try again in 1 second")
    assert user_service.received == []


# --- calls in flight -----------------------------------------------------------------------


@pytest.fixture
def one_call_at_a_time(user_service: StandInUserService) -> Iterator[FormBrowser]:
    settings = Settings(user_service_url=user_service.base_url, user_service_max_in_flight=1)
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield FormBrowser(client)


def test_a_sign_up_past_the_bound_is_shed_with_the_busy_page(
    one_call_at_a_time: FormBrowser, user_service: StandInUserService
) -> None:
    gate = Gate()
    user_service.script(Reply(201, created(4).body, gate=gate))
    first_form, second_form = one_call_at_a_time.open_form(), one_call_at_a_time.open_form()
    first: list[httpx.Response] = []
    held = threading.Thread(target=lambda: first.append(one_call_at_a_time.submit(form=first_form)))
    held.start()
    try:
        gate.wait_for_arrivals(1)

        shed = one_call_at_a_time.submit(password=OTHER_PASSWORD, form=second_form)
        received_while_full = len(user_service.received)
    finally:
        gate.open()
        held.join(timeout=30)

    assert_busy_page(shed, second_form, "1", "Sign-up is busy, please try again in 1 second")
    assert OTHER_PASSWORD not in shed.text
    assert received_while_full == 1
    assert [response.status_code for response in first] == [200]
    # Once the first call is done, the next sign-up goes through.
    after = one_call_at_a_time.submit(form=second_form)
    assert after.status_code == 200
    assert user_service.received[-1].idempotency_key == second_form.idempotency_key


def test_max_in_flight_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_MAX_IN_FLIGHT", "3")

    assert Settings().user_service_max_in_flight == 3


def test_max_in_flight_defaults_to_64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRONTEND_WEB_USER_SERVICE_MAX_IN_FLIGHT", raising=False)

    assert Settings().user_service_max_in_flight == 64


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_max_in_flight_below_one_or_not_a_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_MAX_IN_FLIGHT", value)

    with pytest.raises(ValueError, match="user_service_max_in_flight"):
        Settings()
