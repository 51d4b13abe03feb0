"""One account per user: 409 for a second one, also under concurrency, on every durable store."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.servers import serve_in_thread
from tests.user_service.client_headers import caller_headers
from tests.user_service.durable_stores import durable_store
from tests.user_service.stub_verifier import RecordingVerifier
from user_service import create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from user_service.accounts import AccountStore

__all__ = ["durable_store"]

PASSWORD = "pw-conflicts-3b1f"


@pytest.fixture
def verifier() -> RecordingVerifier:
    return RecordingVerifier(valid=True)


@pytest.fixture
def client(durable_store: AccountStore, verifier: RecordingVerifier) -> Iterator[httpx.Client]:
    """An HTTP client of the served app, calling as a registered client."""
    headers = caller_headers(durable_store)
    app = create_app(auth_verifier=verifier, account_store=durable_store)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=headers) as client:
        yield client


def _create(client: httpx.Client, username: str) -> httpx.Response:
    return client.post("/accounts", json={"username": username, "password": PASSWORD})


def test_second_account_for_a_username_is_409(client: httpx.Client) -> None:
    assert _create(client, "alice").status_code == 201
    response = _create(client, "alice")
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "Username already taken", "code": "username_taken"},
    )


@pytest.mark.parametrize("spelling", ["ALICE", "Alice", "\uff41\uff4c\uff49\uff43\uff45"])
def test_usernames_are_compared_in_canonical_form(client: httpx.Client, spelling: str) -> None:
    assert _create(client, "alice").status_code == 201
    assert _create(client, spelling).status_code == 409


def test_canonical_username_is_what_is_stored_and_returned(client: httpx.Client) -> None:
    created = _create(client, "ALICE").json()
    assert created["username"] == "alice"
    assert client.get(f"/accounts/{created['id']}").json()["username"] == "alice"


def test_canonical_username_is_what_auth_service_is_asked(
    client: httpx.Client, verifier: RecordingVerifier
) -> None:
    _create(client, "ALICE")
    assert verifier.calls == [("alice", PASSWORD)]


def test_invalid_credentials_for_a_taken_username_are_401_not_409(
    client: httpx.Client, verifier: RecordingVerifier
) -> None:
    _create(client, "alice")
    verifier.valid = False
    response = _create(client, "alice")
    assert (response.status_code, response.json()["code"]) == (401, "invalid_credentials")


def test_concurrent_requests_for_one_username_create_one_account(client: httpx.Client) -> None:
    async def race() -> list[int]:
        async with httpx.AsyncClient(base_url=client.base_url, headers=client.headers) as other:
            responses = await asyncio.gather(
                *(
                    other.post("/accounts", json={"username": "carol", "password": PASSWORD})
                    for _ in range(20)
                )
            )
        return sorted(response.status_code for response in responses)

    assert asyncio.run(race()) == [201] + [409] * 19
    found = [client.get(f"/accounts/{n}").status_code for n in range(1, 41)]
    assert found.count(200) == 1


def test_get_account_returns_it_with_its_creation_time(client: httpx.Client) -> None:
    created = _create(client, "dave").json()
    response = client.get(f"/accounts/{created['id']}")
    assert response.status_code == 200
    body = response.json()
    assert body.pop("created_at").endswith(("+00:00", "Z"))
    assert body == {"id": created["id"], "username": "dave", "status": "active"}


def test_get_unknown_account_is_404(client: httpx.Client) -> None:
    response = client.get("/accounts/4242")
    assert (response.status_code, response.json()) == (
        404,
        {"detail": "Account not found", "code": "not_found"},
    )


@pytest.mark.parametrize("account_id", ["abc", "1.5", str(2**70)])
def test_get_with_a_malformed_or_huge_id_is_4xx_not_500(
    client: httpx.Client, account_id: str
) -> None:
    assert client.get(f"/accounts/{account_id}").status_code in {404, 422}
