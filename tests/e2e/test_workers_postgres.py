"""Many processes, one username: exactly one account, whatever process each request reaches.

user-service runs with ``--workers 2``, or as two separate processes (replicas)
sharing one database; 20 requests for one username race through them. The
username comes in several spellings that PRECIS maps to one canonical form.
The workers share one listening socket and whichever is awake first accepts,
so a race may reach only one of them: races go on, each for a new username,
until one has reached both (told by their metrics files, one per worker).
Both hops run over HTTPS, each caller with its client token: the races as
frontend-web's, user-service to a stand-in auth-service.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.e2e.worker_processes import requests_by_worker, serving, wait_for_counted
from tests.support.postgres import drop_schema, new_schema, postgres_url
from tests.support.system import (
    FRONTEND_WEB,
    TO_AUTH_SERVICE,
    USER_SERVICE,
    ClientToken,
    ServiceProcess,
    add_client,
    caller_settings,
    stand_in_token,
    verified,
)
from tests.user_service.stand_in_auth import serve_stand_in

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.tls import TestTls
    from tests.user_service.stand_in_auth import StandInAuthService

pytestmark = pytest.mark.e2e

PASSWORD = "pw-e2e-workers-8d2a"
CONCURRENT = 20
WORKERS = 2
MAX_RACES = 5
POSTGRES_URL_VARIABLE = "USER_SERVICE_TEST_POSTGRES_URL"
CANONICAL = "racer"
CREATES = {"method": "POST", "route": "/accounts"}


def spellings(canonical: str) -> tuple[str, str, str]:
    """One user, spelled three ways that canonicalise alike (RFC 8265 UsernameCaseMapped).

    For ``racer``: ``racer``, ``RACER`` and a fullwidth ``Racer`` (U+FF32 U+FF41 ...).
    """
    capitalised = canonical.capitalize()
    return canonical, canonical.upper(), "".join(chr(ord(c) + 0xFEE0) for c in capitalised)


@pytest.fixture(scope="module")
def stand_in_auth(test_tls: TestTls) -> Iterator[StandInAuthService]:
    with serve_stand_in(tls=test_tls) as stand_in:  # answers {"valid": true}
        yield stand_in


@pytest.fixture(scope="module")
def auth_token(tmp_path_factory: pytest.TempPathFactory) -> ClientToken:
    """user-service's token for the stand-in auth-service, which checks none."""
    return stand_in_token(TO_AUTH_SERVICE, tmp_path_factory.mktemp("auth-token"))


@dataclass(frozen=True)
class Hops:
    """What a user-service of these tests calls, and how these tests call it.

    Attributes:
        auth: The stand-in auth-service, over HTTPS.
        auth_token: user-service's token for it.
        tls: The certificate of both hops.
    """

    auth: StandInAuthService
    auth_token: ClientToken
    tls: TestTls

    def settings(self, database_url: str) -> dict[str, str]:
        """user-service's settings: ``database_url``, and the stand-in over HTTPS with the token."""
        return {
            "USER_SERVICE_DATABASE_URL": database_url,
            **caller_settings(TO_AUTH_SERVICE, self.auth.base_url, self.auth_token, self.tls),
        }

    def frontend_web(self, database_url: str, folder: Path) -> Caller:
        """Register frontend-web with the user-service of ``database_url``; the caller it makes."""
        settings = {"USER_SERVICE_DATABASE_URL": database_url}
        return Caller(add_client(USER_SERVICE, FRONTEND_WEB, settings, folder), self.tls)

    def every_call_carried_the_token(self) -> bool:
        """Whether every call the stand-in received so far carried user-service's token."""
        expected = self.auth_token.headers["Authorization"]
        return all(received.authorization == expected for received in self.auth.received)


@dataclass(frozen=True)
class Caller:
    """How the races call user-service: as frontend-web, with its token, over HTTPS."""

    token: ClientToken
    tls: TestTls


@pytest.fixture
def hops(
    stand_in_auth: StandInAuthService, auth_token: ClientToken, test_tls: TestTls
) -> Iterator[Hops]:
    stand_in_auth.reset()
    hops = Hops(stand_in_auth, auth_token, test_tls)
    yield hops
    assert stand_in_auth.received, "no call reached auth-service"
    assert hops.every_call_carried_the_token()


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """A fresh schema on the test server: the server's URL, and the schema's name."""
    url = postgres_url(POSTGRES_URL_VARIABLE)
    schema = new_schema(url)
    try:
        yield url, schema
    finally:
        drop_schema(url, schema)


def with_search_path(url: str, schema: str) -> str:
    """``url`` with the libpq ``options`` parameter that makes ``schema`` the search path."""
    parts = urlsplit(url)
    option = f"options=-csearch_path%3D{schema}"
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


@contextlib.contextmanager
def user_service(
    log_path: Path,
    *,
    database_url: str,
    hops: Hops,
    workers: int | None = None,
    metrics: Path | None = None,
) -> Iterator[str]:
    """Run ``user-service serve`` over HTTPS until every worker is up; yield its base URL.

    Args:
        log_path: Where its output goes.
        database_url: Its account store.
        hops: Its auth-service, and the certificate it serves.
        workers: ``--workers N``; one, the default, if ``None``.
        metrics: The multiprocess directory its workers share, kept for the test to read.
    """
    env = hops.settings(database_url)
    if metrics is not None:
        metrics.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    service = ServiceProcess(
        USER_SERVICE,
        env,
        log_path,
        hops.tls,
        options=("--workers", str(workers)) if workers else (),
        workers=workers or 1,
    )
    with service.running():
        yield service.url


async def _race(base_urls: list[str], canonical: str, caller: Caller) -> list[httpx.Response]:
    """Send CONCURRENT requests for one user at once, spread over ``base_urls`` and spellings."""
    names = spellings(canonical)
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        timeout=15, limits=limits, headers=caller.token.headers, verify=verified(caller.tls)
    ) as http:
        return await asyncio.gather(
            *(
                http.post(
                    f"{base_urls[number % len(base_urls)]}/accounts",
                    json={"username": names[number % len(names)], "password": PASSWORD},
                )
                for number in range(CONCURRENT)
            )
        )


def race(base_urls: list[str], caller: Caller, canonical: str = CANONICAL) -> list[httpx.Response]:
    return asyncio.run(_race(base_urls, canonical, caller))


def assert_exactly_one_created(responses: list[httpx.Response], canonical: str = CANONICAL) -> None:
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: CONCURRENT - 1}, [
        (response.status_code, response.text) for response in responses
    ]
    (created,) = (response for response in responses if response.status_code == 201)
    assert created.json()["username"] == canonical
    assert {response.json()["detail"] for response in responses if response.status_code == 409} == {
        "Username already taken"
    }


def race_until_every_worker_is_reached(base_url: str, metrics: Path, caller: Caller) -> list[str]:
    """Race for new usernames until one race has reached every worker; return the usernames.

    Each race must create exactly one account.
    """
    created: list[str] = []
    for number in range(MAX_RACES):
        canonical = CANONICAL + "abcdefgh"[:number]
        before = requests_by_worker(metrics, CREATES)
        assert_exactly_one_created(race([base_url], caller, canonical), canonical)
        created.append(canonical)
        after = wait_for_counted(metrics, CREATES, CONCURRENT * len(created))
        this_race = {pid: count - before.get(pid, 0) for pid, count in after.items()}
        if serving(this_race) == WORKERS:
            return created
    pytest.fail(f"{MAX_RACES} races each reached one worker only")


async def _usernames_in(url: str, schema: str) -> list[str]:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        rows = await connection.fetch(f'SELECT username FROM "{schema}".accounts')  # noqa: S608
    finally:
        await connection.close()
    return [row["username"] for row in rows]


def test_workers_on_postgres_create_one_account_for_racing_requests(
    tmp_path: Path, hops: Hops, postgres_schema: tuple[str, str]
) -> None:
    url, schema = postgres_schema
    database_url = with_search_path(url, schema)
    caller = hops.frontend_web(database_url, tmp_path)

    with user_service(
        tmp_path / "user-service.log",
        database_url=database_url,
        hops=hops,
        workers=WORKERS,
        metrics=tmp_path / "metrics",
    ) as base_url:
        created = race_until_every_worker_is_reached(base_url, tmp_path / "metrics", caller)

    # The tables are in the schema the URL's options named: asyncpg passed them on.
    assert sorted(asyncio.run(_usernames_in(url, schema))) == created


def test_replicas_on_one_postgres_schema_create_one_account_for_racing_requests(
    tmp_path: Path, hops: Hops, postgres_schema: tuple[str, str]
) -> None:
    url, schema = postgres_schema
    database_url = with_search_path(url, schema)
    caller = hops.frontend_web(database_url, tmp_path)

    with (
        user_service(tmp_path / "replica-a.log", database_url=database_url, hops=hops) as replica_a,
        user_service(tmp_path / "replica-b.log", database_url=database_url, hops=hops) as replica_b,
    ):
        responses = race([replica_a, replica_b], caller)

    assert_exactly_one_created(responses)
    assert asyncio.run(_usernames_in(url, schema)) == [CANONICAL]


def test_workers_on_sqlite_create_one_account_for_racing_requests(
    tmp_path: Path, hops: Hops
) -> None:
    database = tmp_path / "accounts.db"
    database_url = f"sqlite:///{database}"
    caller = hops.frontend_web(database_url, tmp_path)

    with user_service(
        tmp_path / "user-service.log",
        database_url=database_url,
        hops=hops,
        workers=WORKERS,
        metrics=tmp_path / "metrics",
    ) as base_url:
        created = race_until_every_worker_is_reached(base_url, tmp_path / "metrics", caller)

    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT username FROM accounts ORDER BY username").fetchall()
    assert rows == [(name,) for name in created]
