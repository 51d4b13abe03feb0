"""Each outcome of a sign-up, rendered from a stand-in user-service's real HTTP answers."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.signup import too_many_attempts
from tests.frontend_web.conftest import (
    OTHER_PASSWORD,
    PASSWORD,
    USER_SERVICE_TOKEN,
    Form,
    FormBrowser,
)
from tests.frontend_web.html import Element, parse
from tests.frontend_web.stand_in_user_service import (
    IN_PROGRESS,
    IN_PROGRESS_TEXT,
    INVALID,
    TAKEN,
    TAKEN_TEXT,
    TOKEN_REFUSED,
    Reply,
    StandInUserService,
    created,
    detail,
    overloaded,
    problem,
)
from tests.support.servers import free_port, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

UNAVAILABLE = "Sign-up is unavailable right now, please try again shortly"


def alert_text(page: Element) -> str:
    [summary] = page.find_all(role="alert")
    return summary.text


def field_error(page: Element, field: str) -> str:
    """The error shown beside ``field``, checking that the input points at it."""
    described_by = page.by_id(field).get("aria-describedby")
    assert described_by == f"{field}-error"
    assert page.by_id(field).get("aria-invalid") == "true"
    return page.by_id(described_by).text.removeprefix("Error: ")


def assert_field_is_clean(page: Element, field: str) -> None:
    assert page.by_id(field).get("aria-invalid") is None
    assert page.by_id(field).get("aria-describedby") is None
    assert not page.has_id(f"{field}-error")


# --- success -------------------------------------------------------------------------------


def test_created_account_shows_its_id_and_username(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(created(42, "alice"))

    response = visitor.submit("Alice")

    assert response.status_code == 200
    page = parse(response.text)
    assert page.find_all("h1")[0].text == "Account created"
    details = {
        dt.text: dd.text for dt, dd in zip(page.find_all("dt"), page.find_all("dd"), strict=True)
    }
    assert details == {"Username": "alice", "Account ID": "42"}
    assert page.find_all("title")[0].text == "Account created \N{EN DASH} Accounts"


def test_user_service_gets_the_username_and_password_as_typed(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    visitor.submit("  alice ", " spaced password ")

    assert [r.body for r in user_service.received] == [
        {"username": "alice", "password": " spaced password "}
    ]


def test_replayed_account_is_shown_as_created(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(created(7, replayed=True))

    response = visitor.submit()

    assert response.status_code == 200
    assert "Account created" in parse(response.text).find_all("h1")[0].text


# --- idempotency ---------------------------------------------------------------------------


def test_forms_idempotency_key_is_sent_as_the_header(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()

    visitor.submit(form=form)

    assert [r.idempotency_key for r in user_service.received] == [form.idempotency_key]


def test_each_rendered_form_has_a_fresh_key(visitor: FormBrowser) -> None:
    keys = {visitor.open_form().idempotency_key for _ in range(5)}

    assert len(keys) == 5
    assert all(len(key) >= 32 for key in keys)


def test_a_double_submit_sends_the_same_key_twice(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    user_service.script(created(5), created(5, replayed=True))

    first, second = visitor.submit(form=form), visitor.submit(form=form)

    assert (first.status_code, second.status_code) == (200, 200)
    assert {r.idempotency_key for r in user_service.received} == {form.idempotency_key}
    assert "5" in parse(second.text).by_id("main").text


def test_in_flight_twin_is_waited_for_and_its_account_shown(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    user_service.script(IN_PROGRESS, IN_PROGRESS, created(9, replayed=True))

    response = visitor.submit(form=form)

    assert response.status_code == 200
    assert "taken" not in response.text
    assert "Account created" in response.text
    assert [r.idempotency_key for r in user_service.received] == [form.idempotency_key] * 3


def test_twin_still_running_after_the_retries_is_reported_as_processing(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    user_service.script(IN_PROGRESS)

    response = visitor.submit(form=form)

    assert response.status_code == 202
    assert "taken" not in response.text
    page = parse(response.text)
    [status] = page.find_all(role="status")
    assert "still being processed" in status.text
    assert not page.find_all(role="alert")
    assert page.field_value("idempotency_key") == form.idempotency_key
    assert page.by_id("username").get("value") == "alice"
    # Submitting the form shown then gets the first request's answer.
    user_service.script(created(9, replayed=True))
    again = visitor.submit(form=Form.of(page))
    assert again.status_code == 200
    assert user_service.received[-1].idempotency_key == form.idempotency_key


def test_concurrent_double_submit_through_the_real_retry(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    # The first submission is slow; its twin arrives while it runs and is told "in progress".
    user_service.script(
        Reply(201, created(3).body, delay=0.3), IN_PROGRESS, created(3, replayed=True)
    )
    results: list[httpx.Response] = []
    first = threading.Thread(target=lambda: results.append(visitor.submit(form=form)))
    first.start()
    deadline = time.monotonic() + 5
    while not user_service.received and time.monotonic() < deadline:
        time.sleep(0.01)
    second = visitor.submit(form=form)
    first.join(timeout=10)

    assert [results[0].status_code, second.status_code] == [200, 200]
    assert "3" in parse(second.text).by_id("main").text


# --- refusals ------------------------------------------------------------------------------


def test_wrong_password_says_invalid_credentials(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(INVALID)

    response = visitor.submit()

    assert response.status_code == 422
    page = parse(response.text)
    assert "Invalid credentials" in alert_text(page)
    assert page.find_all("title")[0].text.startswith("Error: ")


def test_taken_username_is_reported_beside_the_username(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(TAKEN)

    response = visitor.submit()

    assert response.status_code == 409
    page = parse(response.text)
    assert "That username is already taken" in alert_text(page)
    assert field_error(page, "username") == "That username is already taken"
    assert_field_is_clean(page, "password")
    assert [a.get("href") for a in page.find_all("a") if a.text.endswith("taken")] == ["#username"]


def test_a_409_coded_taken_is_taken_whatever_its_text_says(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(problem(409, IN_PROGRESS_TEXT, "username_taken"), created())

    response = visitor.submit()

    assert response.status_code == 409
    assert field_error(parse(response.text), "username") == "That username is already taken"
    assert len(user_service.received) == 1


def test_a_409_coded_in_progress_is_retried_whatever_its_text_says(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(
        problem(409, TAKEN_TEXT, "idempotency_key_in_progress"), created(9, replayed=True)
    )

    response = visitor.submit()

    assert response.status_code == 200
    assert "taken" not in response.text
    assert len(user_service.received) == 2


def test_validation_errors_are_placed_beside_their_fields(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(
        detail(
            422,
            [
                {
                    "loc": ["body", "username"],
                    "msg": "Value error, has a character that is not allowed in a username",
                    "type": "value_error",
                },
                {
                    "loc": ["body", "password"],
                    "msg": "String should have at most 1024 characters",
                    "type": "string_too_long",
                },
            ],
        )
    )

    response = visitor.submit("al ice")

    assert response.status_code == 422
    page = parse(response.text)
    assert field_error(page, "username") == (
        "Username has a character that is not allowed in a username"
    )
    assert field_error(page, "password") == "Password should have at most 1024 characters"
    summary_links = {a.get("href") for a in page.by_id("main").find_all("a") if a.get("href")}
    assert {"#username", "#password"} <= summary_links
    assert page.by_id("username").get("value") == "al ice"


def test_validation_error_of_one_field_leaves_the_other_clean(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(
        detail(422, [{"loc": ["body", "password"], "msg": "Field required", "type": "missing"}])
    )

    page = parse(visitor.submit().text)

    assert field_error(page, "password") == "Enter your password"
    assert_field_is_clean(page, "username")


def test_validation_error_without_fields_asks_to_check_and_retry(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    user_service.script(detail(422, "This Idempotency-Key was used with a different request body."))

    response = visitor.submit(form=form)

    assert response.status_code == 422
    page = parse(response.text)
    assert "could not be accepted" in alert_text(page)
    assert "Idempotency-Key" not in response.text
    assert page.field_value("idempotency_key") != form.idempotency_key


@pytest.mark.parametrize(
    ("retry_after", "message"),
    [
        ("1", "Too many attempts, try again in 1 minute"),
        ("60", "Too many attempts, try again in 1 minute"),
        ("61", "Too many attempts, try again in 2 minutes"),
        ("900", "Too many attempts, try again in 15 minutes"),
        (None, "Too many attempts, try again later"),
    ],
)
def test_lockout_says_how_many_minutes_to_wait(
    visitor: FormBrowser,
    user_service: StandInUserService,
    retry_after: str | None,
    message: str,
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    user_service.script(detail(429, "Too many failed attempts", headers))

    response = visitor.submit()

    assert response.status_code == 429
    assert response.headers.get("retry-after") == retry_after
    assert alert_text(parse(response.text)).endswith(message)


@pytest.mark.parametrize(
    ("seconds", "minutes"), [(0, 1), (1, 1), (59, 1), (60, 1), (61, 2), (3600, 60)]
)
def test_wait_is_rounded_up_to_whole_minutes_at_least_one(seconds: int, minutes: int) -> None:
    assert f"in {minutes} minute" in too_many_attempts(seconds)


# --- unavailable ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        detail(502, "auth-service gave an unusable answer; no account was created."),
        detail(503, "auth-service is unavailable", {"Retry-After": "5"}),
        detail(504, "auth-service did not answer in time; no account was created."),
    ],
    ids=["502", "503", "504"],
)
def test_user_service_or_auth_service_down_is_reported_kindly(
    visitor: FormBrowser, user_service: StandInUserService, reply: Reply
) -> None:
    form = visitor.open_form()
    user_service.script(reply)

    response = visitor.submit(form=form)

    assert response.status_code == 503
    page = parse(response.text)
    assert alert_text(page).endswith(UNAVAILABLE)
    assert "auth-service" not in response.text
    assert page.by_id("username").get("value") == "alice"
    # The account may exist after all: the next submit must reuse the key.
    assert page.field_value("idempotency_key") == form.idempotency_key


def test_retry_after_of_a_503_is_passed_on(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(detail(503, "down", {"Retry-After": "5"}))

    assert visitor.submit().headers["retry-after"] == "5"


def test_every_sign_up_carries_frontend_webs_token(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    visitor.submit()
    visitor.submit()

    assert [r.authorization for r in user_service.received] == [f"Bearer {USER_SERVICE_TOKEN}"] * 2


def test_a_refused_client_token_is_the_unavailable_page_and_an_error_naming_the_settings(
    visitor: FormBrowser, user_service: StandInUserService, caplog: pytest.LogCaptureFixture
) -> None:
    form = visitor.open_form()
    user_service.script(TOKEN_REFUSED)

    response = visitor.submit(form=form)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "60"
    page = parse(response.text)
    assert alert_text(page).endswith(UNAVAILABLE)
    assert "Invalid credentials" not in response.text
    assert USER_SERVICE_TOKEN not in response.text
    assert "FRONTEND_WEB_" not in response.text
    assert page.by_id("username").get("value") == "alice"
    [logged] = [r for r in caplog.records if r.name == "frontend_web" and r.levelname == "ERROR"]
    message = logged.getMessage()
    assert "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE or FRONTEND_WEB_USER_SERVICE_TOKEN" in message
    assert USER_SERVICE_TOKEN not in caplog.text


def test_a_401_without_a_challenge_still_says_invalid_credentials(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(INVALID)

    response = visitor.submit()

    assert response.status_code == 422
    assert "Invalid credentials" in alert_text(parse(response.text))


@pytest.fixture
def browser_without_user_service() -> Iterator[FormBrowser]:
    from frontend_web.factory import create_app  # noqa: PLC0415
    from frontend_web.settings import Settings  # noqa: PLC0415

    settings = Settings(user_service_url=f"http://127.0.0.1:{free_port()}")
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield FormBrowser(client)


def test_user_service_not_answering_is_reported_kindly(
    browser_without_user_service: FormBrowser,
) -> None:
    response = browser_without_user_service.submit()

    assert response.status_code == 503
    assert alert_text(parse(response.text)).endswith(UNAVAILABLE)
    assert "127.0.0.1" not in response.text


def test_other_failures_of_user_service_are_reported_without_details(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(detail(500, "Internal Server Error: KeyError in accounts.py"))

    response = visitor.submit()

    assert response.status_code == 502
    assert alert_text(parse(response.text)).endswith(
        "Something went wrong on our side, please try again"
    )
    assert "KeyError" not in response.text


# --- checks before calling user-service ----------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "errors"),
    [
        ("", PASSWORD, {"username": "Enter your username"}),
        ("   ", PASSWORD, {"username": "Enter your username"}),
        ("alice", "", {"password": "Enter your password"}),
        ("", "", {"username": "Enter your username", "password": "Enter your password"}),
    ],
)
def test_empty_fields_are_reported_without_calling_user_service(
    visitor: FormBrowser,
    user_service: StandInUserService,
    username: str,
    password: str,
    errors: dict[str, str],
) -> None:
    response = visitor.submit(username, password)

    assert response.status_code == 422
    assert user_service.received == []
    page = parse(response.text)
    for field in ("username", "password"):
        if field in errors:
            assert field_error(page, field) == errors[field]
        else:
            assert_field_is_clean(page, field)
    assert alert_text(page) == " ".join(["There is a problem", *errors.values()])


def test_uploaded_file_is_refused_without_calling_user_service(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()

    response = visitor.client.post(
        "/signup",
        data={"csrf_token": form.csrf_token, "idempotency_key": form.idempotency_key},
        files={"username": ("name.txt", b"alice")},
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert user_service.received == []


def test_missing_fields_are_treated_as_empty(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()

    response = visitor.client.post(
        "/signup", data={"csrf_token": form.csrf_token, "idempotency_key": form.idempotency_key}
    )

    assert response.status_code == 422
    assert user_service.received == []


# --- what is echoed ------------------------------------------------------------------------


OUTCOMES = [
    created(),
    INVALID,
    TAKEN,
    IN_PROGRESS,
    detail(422, [{"loc": ["body", "password"], "msg": "Too weak", "input": PASSWORD}]),
    detail(422, "bad key"),
    detail(429, "locked", {"Retry-After": "30"}),
    detail(500, "boom"),
    detail(502, "bad gateway"),
    detail(503, "down", {"Retry-After": "5"}),
    overloaded("3"),
    detail(504, "slow"),
]


@pytest.mark.parametrize("reply", OUTCOMES, ids=lambda reply: str(reply.status))
def test_password_is_never_in_a_response(
    visitor: FormBrowser, user_service: StandInUserService, reply: Reply
) -> None:
    user_service.script(reply)

    response = visitor.submit(password=PASSWORD)

    assert PASSWORD not in response.text
    assert PASSWORD not in str(response.headers)
    for field in parse(response.text).find_all("input", type="password"):
        assert field.get("value") is None


def test_password_is_not_echoed_when_fields_are_missing(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    response = visitor.submit("", OTHER_PASSWORD)

    assert OTHER_PASSWORD not in response.text
    assert user_service.received == []


def test_password_is_not_echoed_when_the_token_is_refused(visitor: FormBrowser) -> None:
    response = visitor.submit(password=OTHER_PASSWORD, csrf_token="forged")

    assert response.status_code == 403
    assert OTHER_PASSWORD not in response.text


def test_username_is_escaped_when_shown_again(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(TAKEN)
    hostile = '"><script>alert(1)</script>'

    response = visitor.submit(hostile)

    assert "<script>" not in response.text
    assert parse(response.text).by_id("username").get("value") == hostile


def test_username_from_user_service_is_escaped(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    user_service.script(created(1, "<b>alice</b>"))

    response = visitor.submit()

    assert "<b>alice</b>" not in response.text
    assert "&lt;b&gt;alice&lt;/b&gt;" in response.text
