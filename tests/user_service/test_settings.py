"""Settings of user-service, read from ``USER_SERVICE_*`` environment variables."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import uvicorn
from pydantic import ValidationError

from tests.user_service.client_headers import served
from tests.user_service.stand_in_auth import StandInAuthService, slow_reply
from user_service import create_app
from user_service.auth_client import AuthClient
from user_service.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

ACCOUNT = {"username": "alice", "password": "correct horse battery staple"}

AUTH_VARIABLES = (
    "USER_SERVICE_AUTH_URL",
    "USER_SERVICE_AUTH_TIMEOUT",
    "USER_SERVICE_AUTH_CONNECT_TIMEOUT",
    "USER_SERVICE_AUTH_RETRIES",
    "USER_SERVICE_AUTH_KEEPALIVE_SECONDS",
    "USER_SERVICE_AUTH_MIN_BUDGET_SECONDS",
    "USER_SERVICE_AUTH_MAX_IN_FLIGHT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No auth setting of the caller's environment leaks in; accounts go to a fresh database."""
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER_SERVICE_DATABASE_URL", f"sqlite:///{tmp_path / 'accounts.db'}")


def test_auth_url_from_the_environment_reaches_the_auth_client(
    monkeypatch: pytest.MonkeyPatch, stand_in_auth: StandInAuthService
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_URL", stand_in_auth.base_url)

    with served(create_app()) as client:
        response = client.post("/accounts", json=ACCOUNT)

    assert response.status_code == 201
    assert [request.path for request in stand_in_auth.received] == ["/auth/validate"]


def test_auth_timeout_from_the_environment_reaches_the_auth_client(
    monkeypatch: pytest.MonkeyPatch, stand_in_auth: StandInAuthService
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_URL", stand_in_auth.base_url)
    monkeypatch.setenv("USER_SERVICE_AUTH_TIMEOUT", "0.3")
    stand_in_auth.answer(slow_reply())

    with served(create_app()) as client:
        started = time.monotonic()
        response = client.post("/accounts", json=ACCOUNT, timeout=10)
        elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert elapsed < 2.0  # the default of 3 s would have been waited out


def test_defaults_point_at_a_local_auth_service() -> None:
    settings = Settings()

    assert str(settings.auth_url).rstrip("/") == "http://127.0.0.1:8001"
    assert settings.auth_timeout > 0
    assert settings.auth_connect_timeout > 0


@pytest.mark.parametrize("url", ["not a url", "127.0.0.1:8001", "ftp://auth.test", ""], ids=repr)
def test_invalid_auth_url_is_a_validation_error_naming_it(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(auth_url=url)

    assert [error["loc"] for error in caught.value.errors()] == [("auth_url",)]


def test_invalid_auth_url_in_the_environment_stops_the_app_from_being_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_URL", "not a url")

    with pytest.raises(ValidationError, match="auth_url"):
        create_app()


@pytest.mark.parametrize("field", ["auth_timeout", "auth_connect_timeout"])
@pytest.mark.parametrize("value", [0, -1.5])
def test_non_positive_timeout_is_a_validation_error_naming_it(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({field: value})

    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [
        ((field,), "greater_than")
    ]


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("USER_SERVICE_AUTH_TIMEOUT", "auth_timeout"),
        ("USER_SERVICE_AUTH_CONNECT_TIMEOUT", "auth_connect_timeout"),
    ],
)
def test_non_positive_timeout_in_the_environment_is_a_validation_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str
) -> None:
    monkeypatch.setenv(variable, "0")

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def ask_once(base_url: str) -> bool:
    async def run() -> bool:
        async with AuthClient(base_url, timeout=0.5, retries=0) as client:
            return await client.validate_credentials(ACCOUNT["username"], ACCOUNT["password"])

    return asyncio.run(run())


@pytest.mark.parametrize(
    "decoration",
    [
        "{}/",
        " {} ",
        "{}\n",
        "{}/\n",
    ],
    ids=["trailing-slash", "spaces", "newline", "slash-and-newline"],
)
def test_auth_url_trailing_slash_and_surrounding_whitespace_are_ignored(
    stand_in_auth: StandInAuthService, decoration: str
) -> None:
    settings = Settings(auth_url=decoration.format(stand_in_auth.base_url))

    ask_once(settings.auth_url)

    assert [request.path for request in stand_in_auth.received] == ["/auth/validate"]


@pytest.mark.parametrize(
    "url",
    ["http://auth.test:8001?tenant=a", "http://auth.test:8001/#main"],
    ids=["query", "fragment"],
)
def test_auth_url_with_a_query_or_fragment_is_a_validation_error(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(auth_url=url)

    assert [error["loc"] for error in caught.value.errors()] == [("auth_url",)]


def test_auth_client_defaults_keep_connections_less_long_than_uvicorn_does() -> None:
    settings = Settings()

    # auth-service runs on uvicorn, which closes a connection idle for this long.
    uvicorn_keep_alive = uvicorn.Config(app="auth_service.factory:create_app").timeout_keep_alive
    assert 0 < settings.auth_keepalive_seconds < uvicorn_keep_alive
    assert settings.auth_min_budget_seconds == 0.05
    assert settings.auth_max_in_flight == 64


def test_auth_client_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_KEEPALIVE_SECONDS", "2.5")
    monkeypatch.setenv("USER_SERVICE_AUTH_MIN_BUDGET_SECONDS", "0.2")
    monkeypatch.setenv("USER_SERVICE_AUTH_MAX_IN_FLIGHT", "8")

    settings = Settings()

    assert settings.auth_keepalive_seconds == 2.5
    assert settings.auth_min_budget_seconds == 0.2
    assert settings.auth_max_in_flight == 8


@pytest.mark.parametrize("field", ["auth_keepalive_seconds", "auth_min_budget_seconds"])
@pytest.mark.parametrize("value", [0, -0.5])
def test_non_positive_auth_client_seconds_are_a_validation_error_naming_them(
    field: str, value: float
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({field: value})

    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [
        ((field,), "greater_than")
    ]


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_in_flight_below_one_in_the_environment_is_a_validation_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_MAX_IN_FLIGHT", value)

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert [error["loc"] for error in caught.value.errors()] == [("auth_max_in_flight",)]


def test_min_budget_from_the_environment_reaches_the_auth_client(
    monkeypatch: pytest.MonkeyPatch, stand_in_auth: StandInAuthService
) -> None:
    # More than the whole time limit of a call (3 s): no call is worth making.
    monkeypatch.setenv("USER_SERVICE_AUTH_URL", stand_in_auth.base_url)
    monkeypatch.setenv("USER_SERVICE_AUTH_MIN_BUDGET_SECONDS", "5")

    with served(create_app()) as client:
        response = client.post("/accounts", json=ACCOUNT, timeout=10)

    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert response.json()["code"] == "overloaded"
    assert stand_in_auth.received == []


def test_max_in_flight_from_the_environment_reaches_the_auth_client(
    monkeypatch: pytest.MonkeyPatch, stand_in_auth: StandInAuthService
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_URL", stand_in_auth.base_url)
    monkeypatch.setenv("USER_SERVICE_AUTH_TIMEOUT", "2")
    monkeypatch.setenv("USER_SERVICE_AUTH_MAX_IN_FLIGHT", "1")
    stand_in_auth.answer(slow_reply())

    with served(create_app()) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/accounts", json=ACCOUNT, timeout=10)
        deadline = time.monotonic() + 5
        while not stand_in_auth.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stand_in_auth.received, "the first call never reached auth-service"
        started = time.monotonic()
        second = client.post("/accounts", json=ACCOUNT, timeout=10)
        second_took = time.monotonic() - started
        received_while_first_ran = len(stand_in_auth.received)
        assert first.result().status_code == 504

    assert received_while_first_ran == 1
    assert (second.status_code, second.json()["code"]) == (503, "overloaded")
    assert second_took < 1.0


def test_database_limits_default_to_those_auth_service_has() -> None:
    settings = Settings()

    assert (
        settings.database_timeout_seconds,
        settings.postgres_max_connections,
        settings.sqlite_max_queued_creates,
    ) == (5.0, 10, 1024)


def test_database_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_SERVICE_DATABASE_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("USER_SERVICE_POSTGRES_MAX_CONNECTIONS", "3")
    monkeypatch.setenv("USER_SERVICE_SQLITE_MAX_QUEUED_CREATES", "64")

    settings = Settings()

    assert (
        settings.database_timeout_seconds,
        settings.postgres_max_connections,
        settings.sqlite_max_queued_creates,
    ) == (0.5, 3, 64)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database_timeout_seconds", 0),
        ("postgres_max_connections", 0),
        ("sqlite_max_queued_creates", 0),
    ],
)
def test_database_limits_out_of_range_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({field: value})

    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@db.example/accounts",
        "postgresql://user:hunter2@db.example:port/accounts",
        "postgresql://user:hunter2@wrong@db.example/accounts",
        "hunter2",
    ],
)
def test_a_refused_database_url_is_reported_without_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("USER_SERVICE_DATABASE_URL", url)

    with pytest.raises(ValidationError, match="USER_SERVICE_DATABASE_URL") as caught:
        Settings()

    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)
    assert [error["loc"] for error in caught.value.errors()] == [("database_url",)]


def test_repr_does_not_show_the_database_url() -> None:
    settings = Settings(database_url="postgresql://user:hunter2@db.example/accounts")

    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    assert "hunter2" not in repr(settings.database)
