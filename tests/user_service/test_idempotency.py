"""``Idempotency-Key`` on ``POST /accounts``: retries never create an account twice."""

from __future__ import annotations

import asyncio
import threading
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

PASSWORD = "pw-idempotency-91ac"


class GatedVerifier(RecordingVerifier):
    """Says valid, but only once the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(valid=True)
        self.gate = threading.Event()
        self.entered = threading.Event()

    async def validate_credentials(self, username: str, password: str) -> bool:
        self.entered.set()
        await asyncio.to_thread(self.gate.wait, 5)
        return await super().validate_credentials(username, password)


@pytest.fixture
def verifier() -> GatedVerifier:
    verifier = GatedVerifier()
    verifier.gate.set()
    return verifier


@pytest.fixture
def client(durable_store: AccountStore, verifier: GatedVerifier) -> Iterator[httpx.Client]:
    headers = caller_headers(durable_store)
    app = create_app(auth_verifier=verifier, account_store=durable_store)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=headers) as client:
        yield client


def _create(
    client: httpx.Client, key: str, username: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    return client.post(
        "/accounts",
        json={"username": username, "password": password},
        headers={"Idempotency-Key": key},
    )


def test_retry_with_the_same_key_replays_the_first_answer(client: httpx.Client) -> None:
    first = _create(client, "key-1")
    retry = _create(client, "key-1")
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_replay_does_not_ask_auth_service_again(
    client: httpx.Client, verifier: GatedVerifier
) -> None:
    _create(client, "key-1")
    _create(client, "key-1")
    assert len(verifier.calls) == 1


def test_same_key_with_another_username_is_422(client: httpx.Client) -> None:
    _create(client, "key-1", username="alice")
    response = _create(client, "key-1", username="bob")
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]


def test_without_a_key_a_retry_is_409(client: httpx.Client) -> None:
    client.post("/accounts", json={"username": "alice", "password": PASSWORD})
    retry = client.post("/accounts", json={"username": "alice", "password": PASSWORD})
    assert retry.status_code == 409


def test_a_new_key_for_a_taken_username_is_409(client: httpx.Client) -> None:
    _create(client, "key-1")
    assert _create(client, "key-2").status_code == 409


def test_failed_request_frees_its_key_for_a_retry(
    client: httpx.Client, verifier: GatedVerifier
) -> None:
    verifier.valid = False
    refused = _create(client, "key-1")
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")
    verifier.valid = True
    assert _create(client, "key-1").status_code == 201


def test_retry_while_the_first_is_in_flight_is_409(
    client: httpx.Client, verifier: GatedVerifier
) -> None:
    verifier.gate.clear()
    with httpx.Client(base_url=client.base_url, headers=client.headers) as other:
        first = threading.Thread(target=_create, args=(other, "key-1"))
        first.start()
        try:
            assert verifier.entered.wait(5)
            response = _create(client, "key-1")
        finally:
            verifier.gate.set()
            first.join(5)
    assert response.status_code == 409
    assert "in progress" in response.json()["detail"]
    assert _create(client, "key-1").headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_malformed_key_is_422(client: httpx.Client, key: str) -> None:
    response = client.post(
        "/accounts",
        json={"username": "alice", "password": PASSWORD},
        headers={b"Idempotency-Key": key.encode()},
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert "visible ASCII" in error["msg"]


def test_key_of_255_visible_characters_is_accepted(client: httpx.Client) -> None:
    assert _create(client, "~" * 255).status_code == 201
