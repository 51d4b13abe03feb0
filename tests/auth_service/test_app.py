"""The HTTP API, served by uvicorn with its lifespan running."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from auth_service.app import create_app
from auth_service.credentials import MAX_PASSWORD_LENGTH, MAX_USERNAME_LENGTH, CredentialStore
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from auth_service.settings import Settings


@pytest.fixture
def client(
    fast_settings: Settings, store: CredentialStore, password: str
) -> Iterator[httpx.Client]:
    store.add("alice", password)
    app = create_app(fast_settings, credential_store=store)
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url) as http:
        yield http


def test_right_password_is_valid(client: httpx.Client, password: str) -> None:
    response = client.post("/auth/validate", json={"username": "alice", "password": password})

    assert (response.status_code, response.json()) == (200, {"valid": True, "subject": "alice"})


def test_wrong_password_is_invalid(client: httpx.Client) -> None:
    response = client.post("/auth/validate", json={"username": "alice", "password": "guess"})

    assert (response.status_code, response.json()) == (200, {"valid": False, "subject": "alice"})


def test_unknown_user_is_answered_like_a_wrong_password(
    client: httpx.Client, password: str
) -> None:
    response = client.post("/auth/validate", json={"username": "mallory", "password": password})

    assert (response.status_code, response.json()) == (
        200,
        {"valid": False, "subject": "mallory"},
    )


def test_longest_password_is_accepted_for_checking(client: httpx.Client) -> None:
    long_password = "x" * MAX_PASSWORD_LENGTH

    response = client.post("/auth/validate", json={"username": "alice", "password": long_password})

    assert response.json() == {"valid": False, "subject": "alice"}


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice"},
        {"password": "guess"},
        {"username": "", "password": "guess"},
        {"username": "alice", "password": ""},
        {"username": "a" * (MAX_USERNAME_LENGTH + 1), "password": "guess"},
        {"username": "alice", "password": "x" * (MAX_PASSWORD_LENGTH + 1)},
        {"username": 7, "password": "guess"},
    ],
    ids=[
        "missing-password",
        "missing-username",
        "empty-username",
        "empty-password",
        "too-long-username",
        "too-long-password",
        "username-not-a-string",
    ],
)
def test_malformed_body_is_422(client: httpx.Client, body: dict[str, object]) -> None:
    assert client.post("/auth/validate", json=body).status_code == 422


def test_422_names_the_faulty_field(client: httpx.Client) -> None:
    response = client.post("/auth/validate", json={"username": "alice"})

    assert [error["loc"] for error in response.json()["detail"]] == [["body", "password"]]


def test_422_does_not_echo_the_password(client: httpx.Client) -> None:
    too_long = "s3cret-" * 200

    response = client.post("/auth/validate", json={"username": "alice", "password": too_long})

    assert "s3cret" not in response.text


def test_livez_answers_ok(client: httpx.Client) -> None:
    response = client.get("/livez")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_app_opens_its_own_store_from_settings(fast_settings: Settings, password: str) -> None:
    with CredentialStore.from_settings(fast_settings) as store:
        store.add("alice", password)

    with serve_in_thread(create_app(fast_settings)) as base_url:
        response = httpx.post(
            f"{base_url}/auth/validate", json={"username": "alice", "password": password}
        )

    assert response.json() == {"valid": True, "subject": "alice"}


def test_given_store_stays_open_after_shutdown(
    fast_settings: Settings, store: CredentialStore
) -> None:
    with serve_in_thread(create_app(fast_settings, credential_store=store)):
        pass

    assert store.usernames() == []
