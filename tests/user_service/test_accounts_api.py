"""``POST /accounts`` and ``GET /livez``, with a stub verifier standing in for auth-service."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.user_service.client_headers import caller_headers
from tests.user_service.stub_verifier import RecordingVerifier
from user_service import create_app
from user_service.accounts import InMemoryAccountStore, UserAccount
from user_service.models import MAX_PASSWORD_LENGTH
from usernames import MAX_USERNAME_LENGTH

if TYPE_CHECKING:
    from fastapi import FastAPI


def stored(store: InMemoryAccountStore, account_id: int) -> UserAccount | None:
    """The account ``store`` holds under ``account_id``, if any."""
    return asyncio.run(store.get(account_id))


USERNAME = "alice"
PASSWORD = "pw-7f3c9e-never-echo-me"  # distinctive, so a leak in a response is visible


@dataclass(frozen=True)
class Client:
    """Calls one app in-process through httpx's ASGI transport, sending ``headers`` too."""

    app: FastAPI
    headers: dict[str, str]

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> httpx.Response:
        if content is None and body is not None:
            content = json.dumps(body).encode()
        headers = {**self.headers, **({"content-type": content_type} if content_type else {})}

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://user-service.test"
            ) as client:
                return await client.request(method, path, content=content, headers=headers)

        return asyncio.run(send())

    def create_account(self, username: str = USERNAME, password: str = PASSWORD) -> httpx.Response:
        return self.request("POST", "/accounts", body={"username": username, "password": password})


@pytest.fixture
def verifier() -> RecordingVerifier:
    return RecordingVerifier(valid=True)


@pytest.fixture
def store() -> InMemoryAccountStore:
    return InMemoryAccountStore()


@pytest.fixture
def client(verifier: RecordingVerifier, store: InMemoryAccountStore) -> Client:
    return Client(create_app(auth_verifier=verifier, account_store=store), caller_headers(store))


def test_valid_credentials_are_201_with_the_new_account(client: Client) -> None:
    response = client.create_account()

    assert response.status_code == 201
    assert response.json() == {"id": 1, "username": USERNAME, "status": "created"}


def test_created_account_is_kept_in_the_store(client: Client, store: InMemoryAccountStore) -> None:
    client.create_account()

    assert stored(store, 1) == UserAccount(id=1, username=USERNAME)


def test_ids_increase_from_one(client: Client, store: InMemoryAccountStore) -> None:
    responses = [client.create_account(name) for name in ("alice", "bob", "carol")]

    assert [(r.json()["id"], r.json()["username"]) for r in responses] == [
        (1, "alice"),
        (2, "bob"),
        (3, "carol"),
    ]
    assert stored(store, 3) == UserAccount(id=3, username="carol")


def test_longest_username_and_password_are_accepted(client: Client) -> None:
    response = client.create_account("u" * MAX_USERNAME_LENGTH, "p" * MAX_PASSWORD_LENGTH)

    assert response.status_code == 201
    assert response.json()["username"] == "u" * MAX_USERNAME_LENGTH


def test_verifier_receives_exactly_the_username_and_password_sent(
    client: Client, verifier: RecordingVerifier
) -> None:
    password = "  pässwörd with spaces\t"

    client.create_account("alice.o-connor_2", password)

    assert verifier.calls == [("alice.o-connor_2", password)]


def test_invalid_credentials_are_401(client: Client, verifier: RecordingVerifier) -> None:
    verifier.valid = False

    response = client.create_account()

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid credentials", "code": "invalid_credentials"}


def test_invalid_credentials_create_no_account(
    client: Client, verifier: RecordingVerifier, store: InMemoryAccountStore
) -> None:
    verifier.valid = False

    client.create_account()

    assert stored(store, 1) is None
    assert asyncio.run(store.create("probe")).id == 1


@dataclass(frozen=True)
class BadBody:
    """A request body ``POST /accounts`` must refuse with 422, and the ``loc`` it must name."""

    id: str
    loc: list[str | int]
    body: object = None
    content: bytes | None = None
    content_type: str | None = "application/json"

    def send(self, client: Client) -> httpx.Response:
        return client.request(
            "POST",
            "/accounts",
            body=self.body,
            content=self.content,
            content_type=self.content_type,
        )

    @property
    def carries_the_password(self) -> bool:
        sent = self.content if self.content is not None else json.dumps(self.body).encode()
        return PASSWORD.encode() in sent


USERNAME_LOC: list[str | int] = ["body", "username"]
PASSWORD_LOC: list[str | int] = ["body", "password"]
FORM = f"username={USERNAME}&password={PASSWORD}".encode()

BAD_BODIES = [
    BadBody("missing-username", USERNAME_LOC, {"password": PASSWORD}),
    BadBody("missing-password", PASSWORD_LOC, {"username": USERNAME}),
    BadBody("username-not-a-string", USERNAME_LOC, {"username": 42, "password": PASSWORD}),
    BadBody("username-null", USERNAME_LOC, {"username": None, "password": PASSWORD}),
    BadBody("password-not-a-string", PASSWORD_LOC, {"username": USERNAME, "password": [PASSWORD]}),
    BadBody("empty-username", USERNAME_LOC, {"username": "", "password": PASSWORD}),
    BadBody("username-with-a-space", USERNAME_LOC, {"username": "al ice", "password": PASSWORD}),
    BadBody("empty-password", PASSWORD_LOC, {"username": USERNAME, "password": ""}),
    BadBody(
        "username-too-long",
        USERNAME_LOC,
        {"username": "u" * (MAX_USERNAME_LENGTH + 1), "password": PASSWORD},
    ),
    BadBody(
        "password-too-long",
        PASSWORD_LOC,
        {"username": USERNAME, "password": PASSWORD * (MAX_PASSWORD_LENGTH // len(PASSWORD) + 1)},
    ),
    BadBody("json-array", ["body"], [USERNAME, PASSWORD]),
    BadBody("json-string", ["body"], PASSWORD),
    BadBody("not-json", ["body", 0], content=FORM),
    BadBody(
        "form-encoded", ["body"], content=FORM, content_type="application/x-www-form-urlencoded"
    ),
    BadBody("no-body", ["body"], content=b"", content_type=None),
]


def bad_body_ids(bad: BadBody) -> str:
    return bad.id


@pytest.mark.parametrize("bad", BAD_BODIES, ids=bad_body_ids)
def test_invalid_body_is_422_naming_the_field(client: Client, bad: BadBody) -> None:
    response = bad.send(client)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [bad.loc]


@pytest.mark.parametrize("bad", BAD_BODIES, ids=bad_body_ids)
def test_invalid_body_errors_say_what_is_wrong(client: Client, bad: BadBody) -> None:
    [error] = bad.send(client).json()["detail"]

    assert set(error) == {"loc", "msg", "type"}
    assert error["msg"]
    assert error["type"]


@pytest.mark.parametrize(
    "bad", [bad for bad in BAD_BODIES if bad.carries_the_password], ids=bad_body_ids
)
def test_invalid_body_never_echoes_the_password(client: Client, bad: BadBody) -> None:
    response = bad.send(client)

    assert response.status_code == 422
    assert PASSWORD not in response.text


@pytest.mark.parametrize("bad", BAD_BODIES, ids=bad_body_ids)
def test_invalid_body_creates_no_account_and_asks_no_one(
    client: Client, bad: BadBody, verifier: RecordingVerifier, store: InMemoryAccountStore
) -> None:
    bad.send(client)

    assert verifier.calls == []
    assert stored(store, 1) is None


def test_livez_is_200(client: Client) -> None:
    response = client.request("GET", "/livez", content_type=None)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_livez_does_not_consult_auth_service(client: Client, verifier: RecordingVerifier) -> None:
    client.request("GET", "/livez", content_type=None)

    assert verifier.calls == []
