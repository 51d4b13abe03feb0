"""Security headers on every response, and the CSRF protection of the form."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.app import create_app
from frontend_web.client import Account, FrontendClient
from frontend_web.settings import Settings
from tests.frontend_web.conftest import PASSWORD, Form, FormBrowser
from tests.frontend_web.html import parse
from tests.frontend_web.stand_in_user_service import INVALID, StandInUserService, detail
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECRET = "a-shared-csrf-secret-of-enough-length-0123"


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers.get_list("content-security-policy") == [CSP]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


class BrokenClient(FrontendClient):
    """A client with a bug: frontend-web must answer a plain 500 page, without details."""

    async def create_account(
        self,
        username: str,  # noqa: ARG002 - it fails before reading anything
        password: str,  # noqa: ARG002
        *,
        idempotency_key: str | None = None,  # noqa: ARG002
    ) -> Account:
        msg = "a bug"
        raise RuntimeError(msg)


@pytest.fixture
def broken_frontend() -> Iterator[httpx.Client]:
    app = create_app(client=BrokenClient("http://127.0.0.1:1"))
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/static/site.css", 200),
        ("GET", "/static/no-such-file.css", 404),
        ("GET", "/no-such-page", 404),
        ("DELETE", "/", 405),
        ("GET", "/signup", 303),
        ("POST", "/signup", 403),
        ("GET", "/livez", 200),
        ("GET", "/metrics", 200),
    ],
)
def test_every_response_carries_the_security_headers(
    frontend_url: str, method: str, path: str, status: int
) -> None:
    response = httpx.request(method, f"{frontend_url}{path}")

    assert response.status_code == status
    assert_security_headers(response)


@pytest.mark.parametrize(
    "reply",
    [
        detail(401, "Invalid credentials"),
        detail(409, "Username already taken"),
        detail(422, [{"loc": ["body", "username"], "msg": "bad", "type": "value_error"}]),
        detail(429, "Too many", {"Retry-After": "60"}),
        detail(500, "Internal Server Error"),
        detail(503, "down", {"Retry-After": "5"}),
    ],
    ids=["401", "409", "422", "429", "500", "503"],
)
def test_every_outcome_carries_the_security_headers(
    visitor: FormBrowser, user_service: StandInUserService, reply: object
) -> None:
    user_service.script(reply)  # type: ignore[arg-type]

    response = visitor.submit()

    assert response.status_code >= 400
    assert_security_headers(response)


def test_created_account_page_carries_the_security_headers(visitor: FormBrowser) -> None:
    response = visitor.submit()

    assert response.status_code == 200
    assert_security_headers(response)


def test_empty_fields_page_carries_the_security_headers(visitor: FormBrowser) -> None:
    response = visitor.submit("", "")

    assert response.status_code == 422
    assert_security_headers(response)


def test_oversized_body_is_refused_with_the_security_headers(frontend_url: str) -> None:
    response = httpx.post(f"{frontend_url}/signup", content=b"x" * 20_000)

    assert response.status_code == 413
    assert_security_headers(response)


def test_unexpected_failure_is_a_plain_500_page_with_the_security_headers(
    broken_frontend: httpx.Client,
) -> None:
    response = FormBrowser(broken_frontend).submit()

    assert response.status_code == 500
    assert_security_headers(response)
    assert parse(response.text).find_all("h1")[0].text == "Something went wrong"
    for leak in ("a bug", "Traceback", "RuntimeError", PASSWORD):
        assert leak not in response.text


def test_pages_with_tokens_or_outcomes_are_never_cached(visitor: FormBrowser) -> None:
    assert visitor.client.get("/").headers["cache-control"] == "no-store"
    assert visitor.submit().headers["cache-control"] == "no-store"


def test_csrf_cookie_is_http_only_strict_and_site_wide(frontend_url: str) -> None:
    response = httpx.get(f"{frontend_url}/")

    [cookie] = response.headers.get_list("set-cookie")
    name, _, flags = cookie.partition(";")
    assert name.startswith("csrf=")
    assert {flag.strip().lower() for flag in flags.split(";")} == {
        "httponly",
        "path=/",
        "samesite=strict",
    }


def test_cookie_is_secure_when_the_request_came_over_https(frontend_url: str) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as from a TLS-terminating proxy.
    response = httpx.get(f"{frontend_url}/", headers={"X-Forwarded-Proto": "https"})

    assert "; secure" in response.headers["set-cookie"].lower()


def test_post_without_the_cookie_is_refused_and_user_service_not_called(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    visitor.client.cookies.clear()

    response = visitor.submit(form=form)

    assert response.status_code == 403
    assert user_service.received == []


def test_post_without_a_token_is_refused_and_user_service_not_called(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    response = visitor.submit(csrf_token="")

    assert response.status_code == 403
    assert user_service.received == []


@pytest.mark.parametrize(
    "token",
    ["0" * 64, "not-a-token", "é" * 64],
)
def test_post_with_a_forged_token_is_refused(
    visitor: FormBrowser, user_service: StandInUserService, token: str
) -> None:
    response = visitor.submit(csrf_token=token)

    assert response.status_code == 403
    assert user_service.received == []


def test_token_of_another_browser_is_refused(
    frontend_url: str, visitor: FormBrowser, user_service: StandInUserService
) -> None:
    with httpx.Client(base_url=frontend_url) as other_client:
        others_form = FormBrowser(other_client).open_form()

    response = visitor.submit(form=others_form)

    assert response.status_code == 403
    assert user_service.received == []


def test_token_is_bound_to_the_forms_idempotency_key(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    other = visitor.open_form()

    response = visitor.submit(form=Form(form.csrf_token, other.idempotency_key))

    assert response.status_code == 403
    assert user_service.received == []


def test_refusal_is_a_page_with_a_fresh_form_and_nothing_echoed(visitor: FormBrowser) -> None:
    response = visitor.submit("mallory", csrf_token="forged")

    page = parse(response.text)
    assert page.find_all(role="alert")[0].text.endswith("This form has expired, please try again")
    assert page.by_id("username").get("value") == ""
    assert "mallory" not in response.text
    assert visitor.submit(form=Form.of(page)).status_code == 200


def test_forms_loaded_in_two_tabs_are_both_accepted(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    first_tab, second_tab = visitor.open_form(), visitor.open_form()
    user_service.script(INVALID)

    assert visitor.submit(form=first_tab).status_code == 422
    assert visitor.submit(form=second_tab).status_code == 422
    assert len(user_service.received) == 2


def test_form_of_one_app_is_refused_by_another_without_a_shared_secret(
    user_service: StandInUserService,
) -> None:
    settings = Settings(user_service_url=user_service.base_url)
    with (
        serve_in_thread(create_app(settings)) as first,
        serve_in_thread(create_app(settings)) as second,
        httpx.Client() as client,  # cookies are not per port: both apps get the same one
    ):
        form = FormBrowser(client, first).open_form()
        response = FormBrowser(client, second).submit(form=form)

    assert response.status_code == 403
    assert user_service.received == []


def test_form_of_one_app_is_accepted_by_another_with_the_same_secret(
    user_service: StandInUserService,
) -> None:
    settings = Settings(
        user_service_url=user_service.base_url,
        csrf_secret=SECRET,  # type: ignore[arg-type]
    )
    with (
        serve_in_thread(create_app(settings)) as first,
        serve_in_thread(create_app(settings)) as second,
        httpx.Client() as client,  # cookies are not per port: both apps get the same one
    ):
        form = FormBrowser(client, first).open_form()
        response = FormBrowser(client, second).submit(form=form)

    assert response.status_code == 200
    assert len(user_service.received) == 1
