"""Security headers on every response: pages, outcomes, static files and errors alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.client import Account, FrontendClient
from frontend_web.factory import create_app
from tests.frontend_web.conftest import PASSWORD, FormBrowser
from tests.frontend_web.html import parse
from tests.frontend_web.stand_in_user_service import TAKEN, StandInUserService, detail
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers.get_list("content-security-policy") == [CSP]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


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
        TAKEN,
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


def test_cross_origin_refusal_carries_the_security_headers(frontend_url: str) -> None:
    response = httpx.post(f"{frontend_url}/signup", headers={"Origin": "http://127.0.0.1:1"})

    assert response.status_code == 403
    assert_security_headers(response)
