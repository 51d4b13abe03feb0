"""``user-service clients add | list | remove`` as real processes, and the service they admit."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from servicekit.client_commands import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TOO_MANY_TOKENS,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN_CLIENT,
)
from tests.support.client_tokens import bearer
from tests.support.log_scan import register_secret
from tests.support.postgres import drop_schema, new_schema, postgres_url
from tests.support.processes import clean_environment
from tests.support.servers import HOST, free_port, run_process, venv_command
from tests.user_service.client_headers import CLIENT
from tests.user_service.durable_stores import POSTGRES_URL_VARIABLE

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.user_service.stand_in_auth import StandInAuthService

pytestmark = pytest.mark.e2e

COMMAND_TIMEOUT_SECONDS = 60
TOKEN = re.compile(r"[A-Za-z0-9_-]{43,}")
"""A token as ``clients add`` prints it: at least 256 bits, URL-safe base64 without padding."""
PASSWORD = "pw-e2e-workers-8d2a"


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'accounts.db'}"


@pytest.fixture
def sqlite_database(tmp_path: Path) -> dict[str, str]:
    """The settings of a SQLite file of this test's own, and nothing else of the environment's."""
    return clean_environment({"USER_SERVICE_DATABASE_URL": sqlite_url(tmp_path)})


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The settings of an empty database of each kind: a SQLite file, a PostgreSQL schema."""
    if request.param == "sqlite":
        yield clean_environment({"USER_SERVICE_DATABASE_URL": sqlite_url(tmp_path)})
        return
    url = postgres_url(POSTGRES_URL_VARIABLE)
    schema = new_schema(url)
    try:
        yield clean_environment({"USER_SERVICE_DATABASE_URL": f"{url}?search_path={schema}"})
    finally:
        drop_schema(url, schema)


def clients(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``user-service clients ARGUMENTS`` with ``environment`` as its whole environment."""
    return subprocess.run(
        [venv_command("user-service"), "clients", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


def add(environment: dict[str, str], name: str = CLIENT) -> str:
    """Run ``clients add NAME``, which must succeed; return the token it printed."""
    added = clients(environment, "add", name)
    assert added.returncode == EXIT_OK, added.stderr
    return register_secret(added.stdout.strip())


def listed(environment: dict[str, str]) -> list[tuple[str, datetime]]:
    """Run ``clients list``, which must succeed; return each line's name and time."""
    result = clients(environment, "list")
    assert result.returncode == EXIT_OK, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert all(len(fields) == 2 for fields in lines), result.stdout
    return [(name, datetime.fromisoformat(made)) for name, made in lines]


def test_add_prints_the_token_alone_on_stdout_and_the_message_on_stderr(
    database: dict[str, str],
) -> None:
    added = clients(database, "add", CLIENT)
    token = register_secret(added.stdout.removesuffix("\n"))

    assert added.returncode == EXIT_OK, added.stderr
    assert TOKEN.fullmatch(token), "stdout holds the token and nothing else"
    assert added.stderr == (
        f"user-service: made a token for client {CLIENT!r}; it is not shown again\n"
    )


def test_each_token_is_new(sqlite_database: dict[str, str]) -> None:
    assert add(sqlite_database) != add(sqlite_database)


def test_a_third_token_for_a_client_exits_3_and_says_how_to_rotate(
    database: dict[str, str],
) -> None:
    add(database)
    add(database)

    third = clients(database, "add", CLIENT)

    assert (third.returncode, third.stdout) == (EXIT_TOO_MANY_TOKENS, "")
    assert f"clients remove {CLIENT} --oldest" in third.stderr
    assert [name for name, _ in listed(database)] == [CLIENT, CLIENT]


def test_list_prints_a_line_per_token_by_client_then_oldest_first(
    database: dict[str, str],
) -> None:
    started = datetime.now(UTC)
    tokens = [add(database), add(database, "another-client"), add(database)]

    result = clients(database, "list")
    lines = listed(database)

    assert [name for name, _ in lines] == ["another-client", CLIENT, CLIENT]
    ours = [made for name, made in lines if name == CLIENT]
    assert ours == sorted(ours)
    for _, made in lines:
        assert made.utcoffset() == timedelta(0)
        assert started - timedelta(seconds=5) <= made <= datetime.now(UTC)
    assert not [token for token in tokens if token in result.stdout + result.stderr]


def test_list_of_no_client_prints_nothing(sqlite_database: dict[str, str]) -> None:
    result = clients(sqlite_database, "list")

    assert (result.returncode, result.stdout) == (EXIT_OK, "")


def test_remove_oldest_keeps_the_newer_token_and_remove_takes_the_rest(
    database: dict[str, str],
) -> None:
    add(database)
    add(database)
    _, newer = listed(database)[1]

    oldest = clients(database, "remove", CLIENT, "--oldest")
    after_oldest = listed(database)
    rest = clients(database, "remove", CLIENT)

    assert (oldest.returncode, oldest.stdout) == (EXIT_OK, "")
    assert "revoked 1 token(s)" in oldest.stderr
    assert after_oldest == [(CLIENT, newer)]
    assert rest.returncode == EXIT_OK
    assert listed(database) == []


def test_remove_of_an_unknown_client_exits_4(database: dict[str, str]) -> None:
    add(database, "another-client")

    removed = clients(database, "remove", CLIENT)

    assert (removed.returncode, removed.stdout) == (EXIT_UNKNOWN_CLIENT, "")
    assert f"no client is named {CLIENT!r}" in removed.stderr
    assert [name for name, _ in listed(database)] == ["another-client"]


@pytest.mark.parametrize("name", ["has space", "a/b", ".starts-with-a-dot", "x" * 65, "é"])
def test_add_of_an_invalid_name_exits_1_and_registers_nothing(
    sqlite_database: dict[str, str], name: str
) -> None:
    added = clients(sqlite_database, "add", name)

    assert (added.returncode, added.stdout) == (EXIT_BAD_INPUT, "")
    assert "is not a client name" in added.stderr
    assert listed(sqlite_database) == []


def test_an_invalid_database_url_exits_1_without_showing_it() -> None:
    environment = clean_environment(
        {"USER_SERVICE_DATABASE_URL": "mysql://admin:pw-db-5c2e@db.internal/accounts"}
    )

    result = clients(environment, "list")

    assert (result.returncode, result.stdout) == (EXIT_BAD_INPUT, "")
    assert "invalid settings" in result.stderr
    assert "pw-db-5c2e" not in result.stderr


def test_a_database_that_cannot_be_reached_exits_5() -> None:
    environment = clean_environment(
        {
            "USER_SERVICE_DATABASE_URL": f"postgresql://{HOST}:{free_port()}/test",
            "USER_SERVICE_DATABASE_TIMEOUT_SECONDS": "2",
        }
    )

    result = clients(environment, "add", CLIENT)

    assert (result.returncode, result.stdout) == (EXIT_UNAVAILABLE, "")
    assert "the database cannot be used" in result.stderr


def test_served_process_answers_a_token_that_clients_add_made_until_clients_remove(
    sqlite_database: dict[str, str], tmp_path: Path, stand_in_auth: StandInAuthService
) -> None:
    token = add(sqlite_database)
    port = free_port()
    command = [venv_command("user-service"), "serve", "--host", HOST, "--port", str(port)]
    environment = {
        **sqlite_database,
        "USER_SERVICE_AUTH_URL": stand_in_auth.base_url,
        "USER_SERVICE_AUTH_TOKEN": "any-token-for-the-stand-in-auth-service",
        "USER_SERVICE_CLIENT_TOKEN_CACHE_SECONDS": "0",
    }
    log_path = tmp_path / "user-service.log"

    with (
        run_process(command, port=port, env=environment, log_path=log_path),
        httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as client,
    ):
        without = client.get("/accounts/1")
        created = client.post(
            "/accounts", json={"username": "alice", "password": PASSWORD}, headers=bearer(token)
        )
        fetched = client.get("/accounts/1", headers=bearer(token))
        removed = clients(sqlite_database, "remove", CLIENT)
        after = client.get("/accounts/1", headers=bearer(token))
        live = client.get("/livez")

    assert (without.status_code, without.json()["code"]) == (401, "invalid_token")
    assert (created.status_code, fetched.json()["username"]) == (201, "alice")
    assert removed.returncode == EXIT_OK
    assert (after.status_code, after.json()["code"]) == (401, "invalid_token")
    assert after.headers["WWW-Authenticate"] == (
        'Bearer realm="user-service", error="invalid_token"'
    )
    assert live.status_code == 200
    log = log_path.read_text(encoding="utf-8")
    entries = [json.loads(line) for line in log.splitlines()]
    requests = [
        (entry["route"], entry["status"], entry.get("client"))
        for entry in entries
        if entry["logger"] == "servicekit.requests"
    ]
    assert requests == [
        ("<unmatched>", 401, None),
        ("/accounts", 201, CLIENT),
        ("/accounts/{account_id}", 200, CLIENT),
        ("<unmatched>", 401, None),
        ("/livez", 200, None),
    ]
    assert token not in log
    assert PASSWORD not in log
