"""Consumer tests of the pact frontend-web -> user-service, driving the real FrontendClient.

Every request is sent as the sign-up page sends it, with the ``Idempotency-Key``
its form carries and the time budget (``X-Time-Budget-Ms``) frontend-web gives
user-service. frontend-web reads only ``id``, ``username`` and ``status`` of a
created account, the ``Idempotent-Replayed`` and ``Retry-After`` headers,
``detail``, and the ``code`` of a 409 or a 503, which tells apart answers that
share their status: so the pact pins ``code`` there, and only there. A 401
that challenges for a bearer token (``WWW-Authenticate``) is user-service
refusing frontend-web's client token; one without is the user's password.
Every request carries frontend-web's client token: the client sends a real
one, made for the test, which the pact matches by its form.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from pact import Pact, match

from frontend_web.client import (
    Account,
    ClientTokenRejectedError,
    FieldError,
    FrontendClient,
    InvalidCredentialsError,
    InvalidRequestError,
    RequestInProgressError,
    SignUpBusyError,
    TooManyAttemptsError,
    UsernameTakenError,
    UserServiceError,
    UserServiceUnavailableError,
)
from servicekit.client_tokens import new_token
from servicekit.deadlines import BUDGET_HEADER
from tests.contracts.committed_pacts import check_descriptions, check_interaction
from tests.contracts.credentials import (
    AUTHORIZATION,
    BUDGET_MS,
    CHALLENGE_PATTERN,
    IDEMPOTENCY_KEY,
    LOCKED_OUT_PASSWORD,
    OVERLOADED_PASSWORD,
    PASSWORD,
    TOKEN_PATTERN,
    USER_SERVICE_CHALLENGE,
    USERNAME,
    WRONG_PASSWORD,
)
from tests.support.log_scan import register_secret

if TYPE_CHECKING:
    from pathlib import Path

    from pact.interaction import HttpInteraction

CONSUMER, PROVIDER = "frontend-web", "user-service"
CREATED = "A request to create an account"
REJECTED = "A request with invalid credentials"
TAKEN = "A request for a username that is taken"
AUTH_DOWN = "A request while auth-service is unavailable"
AUTH_SLOW = "A request while auth-service does not answer in time"
LOCKED_OUT = "A request while alice is locked out"
OVERLOADED = "A request while sign-up is overloaded"
REPLAYED = "A retry of a request that created the account"
IN_PROGRESS = "A retry while the first request is still in progress"
BAD_USERNAME = "A request with a username that is not allowed"
REVOKED = "A request with a revoked client token"
DISALLOWED_USERNAME = "alice smith"
CREATED_ACCOUNT = {"id": match.like(1001), "username": USERNAME, "status": "created"}


@pytest.fixture
def pact() -> Pact:
    return Pact(CONSUMER, PROVIDER)


def _account_request(
    pact: Pact, description: str, state: str, password: str, username: str = USERNAME
) -> HttpInteraction:
    return (
        pact.upon_receiving(description)
        .given(state)
        .with_request("POST", "/accounts")
        .with_header("Authorization", match.regex(AUTHORIZATION, regex=TOKEN_PATTERN))
        .with_header("Idempotency-Key", match.regex(IDEMPOTENCY_KEY, regex=r"[\x21-\x7e]{1,255}"))
        .with_header(BUDGET_HEADER, match.regex(BUDGET_MS, regex=r"\d+"))
        .with_body({"username": username, "password": password}, "application/json")
    )


async def _create_account(base_url: str, password: str, username: str = USERNAME) -> Account:
    async with FrontendClient(base_url, token=register_secret(new_token())) as client:
        return await client.create_account(username, password, idempotency_key=IDEMPOTENCY_KEY)


def _check_account(pact: Pact, scratch: Path) -> Account:
    with pact.serve(addr="127.0.0.1") as server:
        account = asyncio.run(_create_account(str(server.url), PASSWORD))
        check_interaction(server, CONSUMER, PROVIDER, scratch)
    return account


def _check_error(
    pact: Pact,
    scratch: Path,
    password: str,
    expected: type[UserServiceError],
    username: str = USERNAME,
) -> UserServiceError:
    with pact.serve(addr="127.0.0.1") as server:
        with pytest.raises(expected) as raised:
            asyncio.run(_create_account(str(server.url), password, username))
        check_interaction(server, CONSUMER, PROVIDER, scratch)
    return raised.value


@pytest.mark.contract
def test_created_account_is_read_from_201(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, CREATED, "auth accepts credentials", PASSWORD)
        .will_respond_with(201)
        .with_body(CREATED_ACCOUNT, "application/json")
    )
    account = _check_account(pact, tmp_path)
    assert account == Account(id=1001, username=USERNAME, status="created", replayed=False)


@pytest.mark.contract
def test_replayed_account_is_read_from_201_marked_replayed(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(
            pact, REPLAYED, "an account for alice was created with this idempotency key", PASSWORD
        )
        .will_respond_with(201)
        .with_header("Idempotent-Replayed", "true")
        .with_body(CREATED_ACCOUNT, "application/json")
    )
    account = _check_account(pact, tmp_path)
    assert account == Account(id=1001, username=USERNAME, status="created", replayed=True)


@pytest.mark.contract
def test_invalid_credentials_raise_from_401(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, REJECTED, "auth rejects credentials", WRONG_PASSWORD)
        .will_respond_with(401)
        .with_body({"detail": "Invalid credentials"}, "application/json")
    )
    error = _check_error(pact, tmp_path, WRONG_PASSWORD, InvalidCredentialsError)
    assert (error.status, error.detail) == (401, "Invalid credentials")


@pytest.mark.contract
def test_taken_username_raises_from_409(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, TAKEN, "an account for alice already exists", PASSWORD)
        .will_respond_with(409)
        .with_body(
            {"detail": match.str("Username already taken"), "code": "username_taken"},
            "application/json",
        )
    )
    error = _check_error(pact, tmp_path, PASSWORD, UsernameTakenError)
    assert (error.status, error.code) == (409, "username_taken")


@pytest.mark.contract
def test_request_in_progress_raises_from_409_with_its_code(pact: Pact, tmp_path: Path) -> None:
    detail = "A request with this Idempotency-Key is still in progress; retry later."
    (
        _account_request(
            pact, IN_PROGRESS, "a request with this idempotency key is in progress", PASSWORD
        )
        .will_respond_with(409)
        .with_body(
            {"detail": match.str(detail), "code": "idempotency_key_in_progress"},
            "application/json",
        )
    )
    error = _check_error(pact, tmp_path, PASSWORD, RequestInProgressError)
    assert (error.status, error.code) == (409, "idempotency_key_in_progress")


@pytest.mark.contract
def test_refused_username_raises_with_the_field_from_422(pact: Pact, tmp_path: Path) -> None:
    message = "Value error, has a character that is not allowed in a username (spaces)"
    (
        _account_request(
            pact, BAD_USERNAME, "auth accepts credentials", PASSWORD, DISALLOWED_USERNAME
        )
        .will_respond_with(422)
        .with_body(
            {"detail": match.each_like({"loc": ["body", "username"], "msg": match.str(message)})},
            "application/json",
        )
    )
    error = _check_error(pact, tmp_path, PASSWORD, InvalidRequestError, DISALLOWED_USERNAME)
    assert isinstance(error, InvalidRequestError)
    assert error.field_errors == (FieldError("username", message),)


@pytest.mark.contract
def test_auth_service_outage_raises_unavailable_from_503(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, AUTH_DOWN, "auth-service is unavailable", PASSWORD)
        .will_respond_with(503)
        .with_header("Retry-After", match.regex("5", regex=r"\d+"))
        .with_body({"detail": match.str("auth-service is unavailable")}, "application/json")
    )
    error = _check_error(pact, tmp_path, PASSWORD, UserServiceUnavailableError)
    assert not isinstance(error, SignUpBusyError)
    assert (error.status, error.retry_after) == (503, 5)


@pytest.mark.contract
def test_auth_service_timeout_raises_from_504(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, AUTH_SLOW, "auth-service does not answer in time", PASSWORD)
        .will_respond_with(504)
        .with_body({"detail": match.str("auth-service did not answer in time")}, "application/json")
    )
    error = _check_error(pact, tmp_path, PASSWORD, UserServiceError)
    assert error.status == 504


@pytest.mark.contract
def test_lockout_raises_too_many_attempts_from_429(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, LOCKED_OUT, "auth reports too many attempts", LOCKED_OUT_PASSWORD)
        .will_respond_with(429)
        .with_header("Retry-After", match.regex("900", regex=r"\d+"))
        .with_body({"detail": match.str("Too many failed attempts")}, "application/json")
    )
    error = _check_error(pact, tmp_path, LOCKED_OUT_PASSWORD, TooManyAttemptsError)
    assert (error.status, error.retry_after) == (429, 900)


@pytest.mark.contract
def test_overload_raises_the_busy_error_from_503(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, OVERLOADED, "auth-service is overloaded", OVERLOADED_PASSWORD)
        .will_respond_with(503)
        .with_header("Retry-After", match.regex("1", regex=r"\d+"))
        .with_body(
            {"detail": match.str("auth-service is overloaded"), "code": "overloaded"},
            "application/json",
        )
    )
    error = _check_error(pact, tmp_path, OVERLOADED_PASSWORD, SignUpBusyError)
    assert isinstance(error, SignUpBusyError)
    assert (error.status, error.retry_after, error.called) == (503, 1, True)
    assert error.code == "overloaded"


@pytest.mark.contract
def test_a_refused_client_token_raises_from_401_with_a_challenge(
    pact: Pact, tmp_path: Path
) -> None:
    (
        _account_request(pact, REVOKED, "frontend-web's client token is revoked", PASSWORD)
        .will_respond_with(401)
        .with_header(
            "WWW-Authenticate", match.regex(USER_SERVICE_CHALLENGE, regex=CHALLENGE_PATTERN)
        )
    )
    error = _check_error(pact, tmp_path, PASSWORD, ClientTokenRejectedError)
    assert not isinstance(error, InvalidCredentialsError)
    assert error.status == 401


@pytest.mark.contract
def test_committed_pact_holds_exactly_these_interactions() -> None:
    check_descriptions(
        CONSUMER,
        PROVIDER,
        {
            CREATED,
            REPLAYED,
            REJECTED,
            TAKEN,
            IN_PROGRESS,
            BAD_USERNAME,
            AUTH_DOWN,
            AUTH_SLOW,
            LOCKED_OUT,
            OVERLOADED,
            REVOKED,
        },
    )
