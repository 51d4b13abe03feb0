"""Consumer tests of the pact frontend-web -> user-service, driving the real FrontendClient.

frontend-web reads only ``id``, ``username`` and ``status`` of a created account.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from pact import Pact, match

from frontend_web.client import Account, FrontendClient, InvalidCredentialsError
from tests.contracts.committed_pacts import check_descriptions, check_interaction

if TYPE_CHECKING:
    from pathlib import Path

    from pact.interaction import HttpInteraction

CONSUMER, PROVIDER = "frontend-web", "user-service"
CREATED = "A request to create an account"
REJECTED = "A request with invalid credentials"


@pytest.fixture
def pact() -> Pact:
    return Pact(CONSUMER, PROVIDER)


def _account_request(pact: Pact, description: str, state: str, password: str) -> HttpInteraction:
    return (
        pact.upon_receiving(description)
        .given(state)
        .with_request("POST", "/accounts")
        .with_body({"username": "alice", "password": password}, "application/json")
    )


async def _create_account(base_url: str, password: str) -> Account:
    async with FrontendClient(base_url) as client:
        return await client.create_account("alice", password)


@pytest.mark.contract
def test_created_account_is_read_from_201(pact: Pact, tmp_path: Path) -> None:
    password = "correct-horse-battery-staple"
    (
        _account_request(pact, CREATED, "auth accepts credentials", password)
        .will_respond_with(201)
        .with_body(
            {"id": match.like(1001), "username": "alice", "status": "created"}, "application/json"
        )
    )
    with pact.serve(addr="127.0.0.1") as server:
        account = asyncio.run(_create_account(str(server.url), password))
        assert account == Account(id=1001, username="alice", status="created")
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


@pytest.mark.contract
def test_invalid_credentials_raise_from_401(pact: Pact, tmp_path: Path) -> None:
    password = "wrong-password"
    (
        _account_request(pact, REJECTED, "auth rejects credentials", password)
        .will_respond_with(401)
        .with_body({"detail": "Invalid credentials"}, "application/json")
    )
    with pact.serve(addr="127.0.0.1") as server:
        with pytest.raises(InvalidCredentialsError, match="Invalid credentials") as raised:
            asyncio.run(_create_account(str(server.url), password))
        assert raised.value.status == 401
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


@pytest.mark.contract
def test_committed_pact_holds_exactly_these_interactions() -> None:
    check_descriptions(CONSUMER, PROVIDER, {CREATED, REJECTED})
