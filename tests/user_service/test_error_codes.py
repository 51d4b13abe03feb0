"""Every error answer of user-service carries a ``code`` beside ``detail``, one per kind of failure.

user-service runs on a real socket with its real AuthClient, in front of a
stand-in auth-service (on a real socket too) that each case scripts to fail
its own way. The database outage (``store_unavailable``) needs a PostgreSQL
server cut off mid-test: it is in ``test_operations.py``.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.servers import HOST, free_port, serve_in_thread
from tests.user_service.client_headers import caller_headers
from tests.user_service.stand_in_auth import (
    Reply,
    StandInAuthService,
    json_reply,
    raw_reply,
    slow_reply,
    verdict,
)
from user_service import create_app
from user_service.accounts import InMemoryAccountStore
from user_service.models import ErrorCode
from user_service.registration import ClientGoneError, idempotency_claim
from user_service.routes import CLIENT_CLOSED_REQUEST, answer_to
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

USERNAME = "alice"
PASSWORD = "pw-codes-8e2f-never-echo-me"  # distinctive, so a leak in a response is visible
ACCOUNT = {"username": USERNAME, "password": PASSWORD}
KEY = "form-key-1"
TIMEOUT = 0.3


@dataclass(frozen=True)
class UserService:
    """A served user-service app: a client for it, and its account store."""

    client: httpx.Client
    store: InMemoryAccountStore

    def create(self, body: object = ACCOUNT, key: str | None = None) -> httpx.Response:
        headers = {} if key is None else {"Idempotency-Key": key}
        return self.client.post("/accounts", json=body, headers=headers)


@contextmanager
def serve_user_service(auth_url: str) -> Iterator[UserService]:
    settings = Settings(auth_url=auth_url, auth_timeout=TIMEOUT, auth_connect_timeout=TIMEOUT)
    store = InMemoryAccountStore()
    headers = caller_headers(store)
    app = create_app(settings, account_store=store)
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(base_url=base_url, headers=headers, timeout=10) as client,
    ):
        yield UserService(client, store)


@dataclass(frozen=True)
class Services:
    """user-service in front of the stand-in auth-service, and one whose auth-service is gone."""

    user_service: UserService
    cut_off: UserService
    auth: StandInAuthService


@pytest.fixture(scope="module")
def running_services(running_stand_in_auth: StandInAuthService) -> Iterator[Services]:
    with (
        serve_user_service(running_stand_in_auth.base_url) as user_service,
        serve_user_service(f"http://{HOST}:{free_port()}") as cut_off,
    ):
        yield Services(user_service, cut_off, running_stand_in_auth)


@pytest.fixture
def services(running_services: Services, stand_in_auth: StandInAuthService) -> Services:
    """The services, with no account stored and the stand-in answering ``{"valid": true}``."""
    del stand_in_auth  # requested so that the stand-in is reset
    for served in (running_services.user_service, running_services.cut_off):
        asyncio.run(served.store.reset())
    return running_services


def _auth_answers(reply: Reply) -> Callable[[Services], httpx.Response]:
    def send(services: Services) -> httpx.Response:
        services.auth.answer(reply)
        return services.user_service.create()

    return send


def _taken(services: Services) -> httpx.Response:
    services.user_service.create()
    return services.user_service.create()


def _key_in_progress(services: Services) -> httpx.Response:
    asyncio.run(services.user_service.store.claim(idempotency_claim(KEY, USERNAME)))
    return services.user_service.create(key=KEY)


def _key_reused_for_another_username(services: Services) -> httpx.Response:
    services.user_service.create(key=KEY)
    return services.user_service.create({**ACCOUNT, "username": "bob"}, key=KEY)


def _field_missing(services: Services) -> httpx.Response:
    return services.user_service.create({"username": USERNAME})


def _malformed_key(services: Services) -> httpx.Response:
    return services.user_service.create(key="has space")


def _path_not_a_number(services: Services) -> httpx.Response:
    return services.user_service.client.get("/accounts/first")


def _body_too_large(services: Services) -> httpx.Response:
    return services.user_service.create({**ACCOUNT, "padding": "x" * 16384})


def _no_such_account(services: Services) -> httpx.Response:
    return services.user_service.client.get("/accounts/99")


def _no_such_path(services: Services) -> httpx.Response:
    return services.user_service.client.get("/no-such-path")


def _no_such_method(services: Services) -> httpx.Response:
    return services.user_service.client.delete("/accounts/1")


def _budget_too_small(services: Services) -> httpx.Response:
    return services.user_service.client.post(
        "/accounts", json=ACCOUNT, headers={"X-Time-Budget-Ms": "5"}
    )


def _auth_unreachable(services: Services) -> httpx.Response:
    return services.cut_off.create()


@dataclass(frozen=True)
class Case:
    """A way for ``POST /accounts`` (or another route) to fail, and the answer it must get."""

    id: str
    send: Callable[[Services], httpx.Response]
    status: int
    code: str
    retry_after: bool = False


CASES = [
    Case("wrong-password", _auth_answers(verdict(valid=False)), 401, "invalid_credentials"),
    Case("username-taken", _taken, 409, "username_taken"),
    Case("key-in-progress", _key_in_progress, 409, "idempotency_key_in_progress"),
    Case(
        "key-for-another-username",
        _key_reused_for_another_username,
        422,
        "idempotency_key_mismatch",
    ),
    Case("field-missing", _field_missing, 422, "invalid_request"),
    Case("malformed-key", _malformed_key, 422, "invalid_request"),
    Case("path-not-a-number", _path_not_a_number, 422, "invalid_request"),
    Case("body-too-large", _body_too_large, 413, "body_too_large"),
    Case("no-such-account", _no_such_account, 404, "not_found"),
    Case("no-such-path", _no_such_path, 404, "not_found"),
    Case("no-such-method", _no_such_method, 405, "method_not_allowed"),
    Case(
        "locked-out",
        _auth_answers(Reply(status=429, body=b"{}", headers=(("Retry-After", "900"),))),
        429,
        "too_many_attempts",
        retry_after=True,
    ),
    Case(
        "auth-overloaded",
        _auth_answers(Reply(status=503, body=b"{}", headers=(("Retry-After", "7"),))),
        503,
        "overloaded",
        retry_after=True,
    ),
    Case("budget-too-small", _budget_too_small, 503, "overloaded", retry_after=True),
    Case("auth-unreachable", _auth_unreachable, 503, "auth_unavailable", retry_after=True),
    Case("auth-too-slow", _auth_answers(slow_reply()), 504, "auth_timeout"),
    Case(
        "auth-500",
        _auth_answers(json_reply({"detail": "boom"}, status=500)),
        502,
        "auth_bad_response",
    ),
    Case(
        "auth-not-json",
        _auth_answers(raw_reply(b"<html>it works</html>", content_type="text/html")),
        502,
        "auth_bad_response",
    ),
]

ANSWERED_ELSEWHERE = {
    "store_unavailable": "test_operations.py, against a PostgreSQL server cut off",
    "client_closed_request": "its client has gone, so the answer is read from the table",
    "invalid_token": "test_client_tokens_api.py (servicekit's RequireClientToken)",
    "shutting_down": "e2e/test_workers_supervision.py (servicekit's ServiceMiddleware)",
}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_each_error_answer_has_its_status_and_code(services: Services, case: Case) -> None:
    response = case.send(services)

    assert (response.status_code, response.json()["code"]) == (case.status, case.code)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_each_error_body_is_a_detail_and_a_code(services: Services, case: Case) -> None:
    body = case.send(services).json()

    assert list(body) == ["detail", "code"]
    assert body["detail"]
    assert isinstance(body["detail"], list if body["code"] == "invalid_request" else str)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_each_error_answer_says_when_to_retry_if_retrying_helps(
    services: Services, case: Case
) -> None:
    response = case.send(services)

    assert ("Retry-After" in response.headers) is case.retry_after
    assert PASSWORD not in response.text


def test_a_method_not_allowed_still_names_the_allowed_ones(services: Services) -> None:
    response = _no_such_method(services)

    assert response.headers["Allow"] == "GET"


def test_client_gone_is_499_client_closed_request() -> None:
    answer = answer_to(ClientGoneError())

    assert (answer.status_code, answer.code) == (CLIENT_CLOSED_REQUEST, "client_closed_request")


def test_every_code_is_answered_by_some_case() -> None:
    answered = {case.code for case in CASES} | set(ANSWERED_ELSEWHERE)

    assert answered == {str(code) for code in ErrorCode}


def test_the_openapi_document_lists_every_code_a_client_receives(services: Services) -> None:
    schemas = services.user_service.client.get("/openapi.json").json()["components"]["schemas"]

    documented = {
        code
        for schema in schemas.values()
        if "code" in schema.get("properties", {})
        for code in schema["properties"]["code"].get(
            "enum", [schema["properties"]["code"].get("const")]
        )
    }
    assert documented == {str(code) for code in ErrorCode} - {
        "client_closed_request",
        "method_not_allowed",
    }
    assert all(
        schema["required"] == ["detail", "code"]
        for schema in schemas.values()
        if "code" in schema.get("properties", {})
    )
    assert schemas["InvalidRequestResponse"]["properties"]["code"]["const"] == "invalid_request"
