"""Consumer tests of the pact frontend-web -> user-service, driving the real FrontendClient.

frontend-web reads only ``id``, ``username`` and ``status`` of a created account.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from pact import Pact, match

from frontend_web.client import (
    Account,
    FrontendClient,
    InvalidCredentialsError,
    TooManyAttemptsError,
    UsernameTakenError,
    UserServiceError,
    UserServiceUnavailableError,
)
from tests.contracts.committed_pacts import check_descriptions, check_interaction
from tests.contracts.credentials import LOCKED_OUT_PASSWORD, PASSWORD, USERNAME, WRONG_PASSWORD

if TYPE_CHECKING:
    from pathlib import Path

    from pact.interaction import HttpInteraction

CONSUMER, PROVIDER = "frontend-web", "user-service"
CREATED = "A request to create an account"
REJECTED = "A request with invalid credentials"
TAKEN = "A request for a username that is taken"
AUTH_DOWN = "A request while auth-service is unavailable"
LOCKED_OUT = "A request while alice is locked out"


@pytest.fixture
def pact() -> Pact:
    return Pact(CONSUMER, PROVIDER)


def _account_request(pact: Pact, description: str, state: str, password: str) -> HttpInteraction:
    return (
        pact.upon_receiving(description)
        .given(state)
        .with_request("POST", "/accounts")
        .with_body({"username": USERNAME, "password": password}, "application/json")
    )


async def _create_account(base_url: str, password: str) -> Account:
    async with FrontendClient(base_url) as client:
        return await client.create_account(USERNAME, password)


def _check_error(
    pact: Pact, scratch: Path, password: str, expected: type[UserServiceError]
) -> UserServiceError:
    with pact.serve(addr="127.0.0.1") as server:
        with pytest.raises(expected) as raised:
            asyncio.run(_create_account(str(server.url), password))
        check_interaction(server, CONSUMER, PROVIDER, scratch)
    return raised.value


@pytest.mark.contract
def test_created_account_is_read_from_201(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, CREATED, "auth accepts credentials", PASSWORD)
        .will_respond_with(201)
        .with_body(
            {"id": match.like(1001), "username": USERNAME, "status": "created"}, "application/json"
        )
    )
    with pact.serve(addr="127.0.0.1") as server:
        account = asyncio.run(_create_account(str(server.url), PASSWORD))
        assert account == Account(id=1001, username=USERNAME, status="created")
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


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
        .with_body({"detail": match.str("Username already taken")}, "application/json")
    )
    error = _check_error(pact, tmp_path, PASSWORD, UsernameTakenError)
    assert error.status == 409


@pytest.mark.contract
def test_auth_service_outage_raises_unavailable_from_503(pact: Pact, tmp_path: Path) -> None:
    (
        _account_request(pact, AUTH_DOWN, "auth-service is unavailable", PASSWORD)
        .will_respond_with(503)
        .with_header("Retry-After", match.regex("5", regex=r"\d+"))
        .with_body({"detail": match.str("auth-service is unavailable")}, "application/json")
    )
    error = _check_error(pact, tmp_path, PASSWORD, UserServiceUnavailableError)
    assert (error.status, error.retry_after) == (503, 5)


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
def test_committed_pact_holds_exactly_these_interactions() -> None:
    check_descriptions(CONSUMER, PROVIDER, {CREATED, REJECTED, TAKEN, AUTH_DOWN, LOCKED_OUT})
