"""user-service answers only its registered clients: ``Authorization: Bearer <client token>``.

The real app runs on a real socket over a SQLite file; the clients are
registered, and revoked, through a second store on the same file, as
``user-service clients`` does while the service runs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from servicekit.client_tokens import new_token
from tests.support.client_tokens import bearer, issue_token
from tests.support.log_scan import register_secret
from tests.support.servers import serve_in_thread
from tests.user_service.client_headers import CLIENT
from tests.user_service.stub_verifier import RecordingVerifier
from user_service import create_app
from user_service.accounts import CLIENT_TOKENS_TABLE
from user_service.settings import Settings
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

USERNAME = "mallory-without-a-token-4b7e"
"""Distinctive, so that it would be seen in a log line."""
PASSWORD = "pw-5d1a0b-never-echo-me"
ACCOUNT = {"username": USERNAME, "password": PASSWORD}
MISSING = 'Bearer realm="user-service"'
INVALID = 'Bearer realm="user-service", error="invalid_token"'
DEFAULT_CACHE_SECONDS = 5.0
OPEN_PATHS = [
    "/livez",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
]


@dataclass(frozen=True)
class Served:
    """user-service on a SQLite file, with a recording verifier standing in for auth-service."""

    client: httpx.Client
    path: Path
    verifier: RecordingVerifier

    def issue(self, client: str = CLIENT) -> str:
        """Register a new token for ``client``, as ``clients add`` does; return it."""
        return issue_token(SqliteAccountStore(self.path), client)

    def remove(self, client: str = CLIENT, *, oldest: bool = False) -> None:
        """Revoke the tokens of ``client`` (or its oldest), as ``clients remove [--oldest]``."""

        async def remove() -> None:
            store = SqliteAccountStore(self.path)
            await store.open()
            try:
                await store.clients.revoke(client, oldest_only=oldest)
            finally:
                await store.close()

        asyncio.run(remove())

    def rows(self) -> dict[str, int]:
        """How many rows each table of the file holds."""
        tables = ("accounts", "idempotency_keys", CLIENT_TOKENS_TABLE)
        with closing(sqlite3.connect(self.path)) as connection:
            return {
                table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in tables
            }

    def create(self, headers: dict[str, str], username: str = USERNAME) -> httpx.Response:
        return self.client.post(
            "/accounts",
            json={**ACCOUNT, "username": username},
            headers={**headers, "Idempotency-Key": f"key-{username}"},
        )


def serve(tmp_path: Path, settings: Settings) -> Iterator[Served]:
    path = tmp_path / "accounts.db"
    verifier = RecordingVerifier(valid=True)
    app = create_app(settings, auth_verifier=verifier, account_store=SqliteAccountStore(path))
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        yield Served(client, path, verifier)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The service asking the database about every token: a removal takes effect at once."""
    yield from serve(tmp_path, Settings(client_token_cache_seconds=0))


@pytest.fixture
def served_with_default_cache(tmp_path: Path) -> Iterator[Served]:
    """The service remembering each answer about a token for the default time."""
    settings = Settings()
    assert settings.client_token_cache_seconds == DEFAULT_CACHE_SECONDS
    yield from serve(tmp_path, settings)


def _no_token(_: Served) -> dict[str, str]:
    return {}


def _another_scheme(_: Served) -> dict[str, str]:
    return {"Authorization": f"Basic {register_secret(new_token())}"}


def _unknown_token(_: Served) -> dict[str, str]:
    return bearer(register_secret(new_token()))


def _revoked_token(served: Served) -> dict[str, str]:
    token = served.issue()
    served.remove()
    return bearer(token)


@dataclass(frozen=True)
class Refused:
    """A way of calling without a valid client token, and the challenge it must get."""

    id: str
    headers: Callable[[Served], dict[str, str]]
    challenge: str


REFUSED = [
    Refused("no-token", _no_token, MISSING),
    Refused("another-scheme", _another_scheme, MISSING),
    Refused("unknown-token", _unknown_token, INVALID),
    Refused("revoked-token", _revoked_token, INVALID),
]


def _post_account(served: Served, headers: dict[str, str]) -> httpx.Response:
    return served.create(headers)


def _get_account(served: Served, headers: dict[str, str]) -> httpx.Response:
    return served.client.get("/accounts/1", headers=headers)


ROUTES = {"POST /accounts": _post_account, "GET /accounts/{id}": _get_account}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("refused", REFUSED, ids=lambda refused: refused.id)
def test_a_call_without_a_valid_token_is_401_and_does_nothing(
    served: Served, refused: Refused, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An account exists, so that a refused GET has something it must not show.
    assert served.create(bearer(served.issue("account-maker")), "alice").status_code == 201
    headers = refused.headers(served)
    served.verifier.calls.clear()
    before = served.rows()
    caplog.clear()

    with caplog.at_level(logging.DEBUG):
        response = ROUTES[route](served, headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == refused.challenge
    body = response.json()
    assert list(body) == ["detail", "code"]
    assert body["code"] == "invalid_token"
    assert "alice" not in response.text
    assert served.verifier.calls == []
    assert served.rows() == before
    logged = [str(vars(record)) for record in caplog.records]
    assert not [line for line in logged if USERNAME in line or PASSWORD in line]
    (line,) = [vars(record) for record in caplog.records if record.name == "servicekit.requests"]
    assert (line["status"], line["route"]) == (401, "<unmatched>")
    assert "client" not in line


def test_a_refused_call_leaves_its_idempotency_key_unused(served: Served) -> None:
    assert served.create({}).status_code == 401

    created = served.create(bearer(served.issue()))

    assert created.status_code == 201
    assert "Idempotent-Replayed" not in created.headers
    assert served.verifier.calls == [(USERNAME, PASSWORD)]


def test_an_unknown_path_without_a_token_is_401_not_404(served: Served) -> None:
    response = served.client.get("/no-such-path")

    assert (response.status_code, response.json()["code"]) == (401, "invalid_token")


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_probes_metrics_and_documentation_answer_without_a_token(served: Served, path: str) -> None:
    assert served.client.get(path).status_code == 200


def test_a_registered_client_is_served_and_named_in_the_request_log_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    token = served.issue()

    with caplog.at_level(logging.INFO, logger="servicekit.requests"):
        created = served.create(bearer(token))
        fetched = served.client.get(f"/accounts/{created.json()['id']}", headers=bearer(token))

    assert (created.status_code, fetched.status_code) == (201, 200)
    assert fetched.json()["username"] == USERNAME
    lines = [vars(record) for record in caplog.records if record.name == "servicekit.requests"]
    assert [(line["route"], line["client"]) for line in lines] == [
        ("/accounts", CLIENT),
        ("/accounts/{account_id}", CLIENT),
    ]
    assert not [record for record in caplog.records if token in str(vars(record))]


def test_a_client_rotating_its_token_is_served_with_either_then_only_the_newer(
    served: Served,
) -> None:
    older, newer = served.issue(), served.issue()

    with_older = served.create(bearer(older), "alice")
    with_newer = served.create(bearer(newer), "bob")
    served.remove(oldest=True)
    older_after = served.client.get("/accounts/1", headers=bearer(older))
    newer_after = served.client.get("/accounts/1", headers=bearer(newer))

    assert (with_older.status_code, with_newer.status_code) == (201, 201)
    assert older_after.status_code == 401
    assert older_after.headers["WWW-Authenticate"] == INVALID
    assert (newer_after.status_code, newer_after.json()["username"]) == (200, "alice")


def test_removing_a_client_refuses_all_its_tokens_and_no_other_client(served: Served) -> None:
    first, second, other = served.issue(), served.issue(), served.issue("another-client")

    served.remove()

    statuses = [
        served.client.get("/accounts/1", headers=bearer(token)).status_code
        for token in (first, second, other)
    ]
    assert statuses == [401, 401, 404]


def test_a_removed_token_is_refused_within_the_default_cache_time(
    served_with_default_cache: Served,
) -> None:
    served = served_with_default_cache
    token = served.issue()
    assert served.client.get("/accounts/1", headers=bearer(token)).status_code == 404

    served.remove()
    removed_at = time.monotonic()
    while (status := served.client.get("/accounts/1", headers=bearer(token)).status_code) != 401:
        assert status == 404
        assert time.monotonic() - removed_at < DEFAULT_CACHE_SECONDS + 10, "still served"
        time.sleep(0.1)
