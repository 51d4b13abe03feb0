"""Client tokens: the registries on real SQLite and PostgreSQL; the middleware on a real server."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from servicekit.client_tokens import (
    MAX_TOKENS_PER_CLIENT,
    ClientRegistry,
    InMemoryClientRegistry,
    InvalidClientNameError,
    PostgresClientRegistry,
    RequireClientToken,
    SqliteClientRegistry,
    TooManyTokensError,
    UnknownClientError,
    postgres_migration,
    sqlite_migration,
    token_digest,
)
from servicekit.postgres import PostgresDatabase, PostgresSchema
from servicekit.sqlite import SqliteDatabase
from tests.support.postgres import drop_schema, postgres_url
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    Opener = Callable[[], AbstractAsyncContextManager[ClientRegistry]]

TABLE = "test_client_tokens"


class UnavailableError(Exception):
    """What the databases under test raise."""


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a registry of each kind, on a fresh database, until the block ends."""
    kind = request.param
    schema = f"servicekit_{uuid.uuid4().hex[:12]}"
    url = postgres_url("SERVICEKIT_TEST_POSTGRES_URL") if kind == "postgres" else ""

    @asynccontextmanager
    async def registry() -> AsyncIterator[ClientRegistry]:
        if kind == "memory":
            yield InMemoryClientRegistry()
            return
        database: SqliteDatabase | PostgresDatabase
        if kind == "sqlite":
            database = SqliteDatabase(
                tmp_path / "clients.db",
                migrations=(sqlite_migration(TABLE),),
                timeout_seconds=5,
                unavailable=UnavailableError,
            )
        else:
            database = PostgresDatabase(
                url,
                PostgresSchema("servicekit-test", "test_version", (postgres_migration(TABLE),)),
                unavailable=UnavailableError,
                timeout_seconds=5,
                max_connections=2,
                schema=schema,
            )
        await database.open()
        try:
            if isinstance(database, SqliteDatabase):
                yield SqliteClientRegistry(database, table=TABLE)
            else:
                yield PostgresClientRegistry(database, table=TABLE)
        finally:
            await database.close()

    yield registry
    if kind == "postgres":
        drop_schema(url, schema)


def test_a_token_names_its_client_and_only_its_digest_is_kept(opener: Opener) -> None:
    async def main() -> None:
        async with opener() as registry:
            token = await registry.issue("frontend-web")
            assert len(token) >= 43  # 256 bits, URL-safe base64
            assert await registry.client_of(token_digest(token)) == "frontend-web"
            assert await registry.client_of(token_digest(token + "x")) is None
            assert await registry.client_of(token) is None
            assert token_digest(token) == hashlib.sha256(token.encode()).hexdigest()
            [held] = await registry.tokens()
            assert held.client == "frontend-web"
            assert token not in repr(held)

    asyncio.run(main())


def test_two_tokens_at_once_for_a_rotation_and_no_third(opener: Opener) -> None:
    async def main() -> None:
        async with opener() as registry:
            old = await registry.issue("user-service", now=1000.0)
            new = await registry.issue("user-service", now=2000.0)
            assert MAX_TOKENS_PER_CLIENT == 2
            with pytest.raises(TooManyTokensError, match="--oldest"):
                await registry.issue("user-service")
            other = await registry.issue("another-client")
            assert await registry.revoke("user-service", oldest_only=True) == 1
            assert await registry.client_of(token_digest(old)) is None
            assert await registry.client_of(token_digest(new)) == "user-service"
            assert await registry.revoke("user-service") == 1
            assert await registry.client_of(token_digest(new)) is None
            assert await registry.client_of(token_digest(other)) == "another-client"
            with pytest.raises(UnknownClientError):
                await registry.revoke("user-service")

    asyncio.run(main())


def test_tokens_are_listed_by_client_then_oldest_first(opener: Opener) -> None:
    async def main() -> list[tuple[str, float]]:
        async with opener() as registry:
            await registry.issue("b", now=3.0)
            await registry.issue("a", now=2.0)
            await registry.issue("b", now=1.0)
            return [(held.client, held.created) for held in await registry.tokens()]

    assert asyncio.run(main()) == [("a", 2.0), ("b", 1.0), ("b", 3.0)]


@pytest.mark.parametrize("name", ["", "with space", "-leading", "x" * 65, "naïve", "a/b"])
def test_a_client_name_is_refused_unless_it_is_plain(opener: Opener, name: str) -> None:
    async def main() -> None:
        async with opener() as registry:
            with pytest.raises(InvalidClientNameError):
                await registry.issue(name)
            assert await registry.tokens() == []

    asyncio.run(main())


def test_issuing_at_once_cannot_pass_the_limit(opener: Opener) -> None:
    async def main() -> list[object]:
        async with opener() as registry:
            return await asyncio.gather(
                *(registry.issue("racer") for _ in range(6)), return_exceptions=True
            )

    outcomes = asyncio.run(main())
    assert sum(isinstance(outcome, str) for outcome in outcomes) == MAX_TOKENS_PER_CLIENT
    assert all(isinstance(o, (str, TooManyTokensError)) for o in outcomes)


class FailingRegistry(InMemoryClientRegistry):
    async def client_of(self, digest: str) -> str | None:  # noqa: ARG002
        msg = "the database is gone"
        raise UnavailableError(msg)


def guarded_app(registry: ClientRegistry, *, cache_seconds: float = 0) -> FastAPI:
    app = FastAPI()
    bodies_read: list[bytes] = []
    app.state.bodies_read = bodies_read

    @app.post("/work")
    async def work(body: dict[str, str]) -> dict[str, str]:
        bodies_read.append(repr(body).encode())
        return {"done": "yes"}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(
        RequireClientToken,
        registry=registry,
        realm="test-service",
        open_paths={"/livez"},
        cache_seconds=cache_seconds,
        unavailable=UnavailableError,
    )
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_middleware_answers_only_registered_clients_before_the_body_is_read() -> None:
    registry = InMemoryClientRegistry()
    token = asyncio.run(registry.issue("caller"))
    app = guarded_app(registry)
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as http:
        missing = http.post("/work", json={"a": "b"})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="test-service"'
        assert missing.json()["code"] == "invalid_token"
        assert "Bearer" in missing.json()["detail"]

        for wrong, challenge in (
            ("Bearer not-a-token", 'Bearer realm="test-service", error="invalid_token"'),
            (f"Bearer {token}x", 'Bearer realm="test-service", error="invalid_token"'),
            ("Basic dXNlcjpwYXNz", 'Bearer realm="test-service"'),
            (token, 'Bearer realm="test-service"'),
        ):
            refused = http.post("/work", json={"a": "b"}, headers={"Authorization": wrong})
            assert refused.status_code == 401, wrong
            assert refused.headers["www-authenticate"] == challenge
            assert refused.json()["code"] == "invalid_token"
            assert token not in refused.text
        assert app.state.bodies_read == []

        assert http.post("/work", json={"a": "b"}, headers=bearer(token)).json() == {"done": "yes"}
        assert http.get("/livez").status_code == 200
        assert http.get("/nowhere").status_code == 401

        asyncio.run(registry.revoke("caller"))
        assert http.post("/work", json={"a": "b"}, headers=bearer(token)).status_code == 401


def test_a_token_revoked_elsewhere_is_refused_once_the_cache_has_expired(tmp_path: Path) -> None:
    async def main() -> tuple[list[int], float]:
        databases = [
            SqliteDatabase(
                tmp_path / "clients.db",
                migrations=(sqlite_migration(TABLE),),
                timeout_seconds=5,
                unavailable=UnavailableError,
            )
            for _ in range(2)
        ]
        for database in databases:
            await database.open()
        served, elsewhere = (SqliteClientRegistry(d, table=TABLE) for d in databases)
        token = await elsewhere.issue("caller")
        transport = httpx.ASGITransport(app=guarded_app(served, cache_seconds=0.5))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            statuses = [(await http.post("/work", json={}, headers=bearer(token))).status_code]
            await elsewhere.revoke("caller")
            revoked = time.monotonic()
            while statuses[-1] != 401 and time.monotonic() - revoked < 10:
                await asyncio.sleep(0.05)
                statuses.append(
                    (await http.post("/work", json={}, headers=bearer(token))).status_code
                )
            waited = time.monotonic() - revoked
        for database in databases:
            await database.close()
        return statuses, waited

    statuses, waited = asyncio.run(main())
    assert statuses[0] == 200
    assert statuses[-1] == 401
    assert set(statuses[1:-1]) <= {200}
    assert waited < 5


def test_a_token_revoked_through_the_served_registry_is_refused_at_once() -> None:
    registry = InMemoryClientRegistry()
    token = asyncio.run(registry.issue("caller"))
    with serve_in_thread(guarded_app(registry, cache_seconds=600)) as url:
        assert httpx.post(f"{url}/work", json={}, headers=bearer(token)).status_code == 200
        asyncio.run(registry.revoke("caller"))
        assert httpx.post(f"{url}/work", json={}, headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("token", ["short", "x" * 42, "a" * 43 + "!", "a" * 43 + " b"])
def test_a_token_made_elsewhere_must_be_long_and_url_safe(token: str) -> None:
    registry = InMemoryClientRegistry()
    with pytest.raises(ValueError, match="43 URL-safe"):
        asyncio.run(registry.register("caller", token))
    assert asyncio.run(registry.register("caller", "a" * 43)) == "a" * 43


def test_a_registry_that_cannot_be_read_is_a_503_not_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="servicekit.client_tokens"),
        serve_in_thread(guarded_app(FailingRegistry())) as url,
    ):
        answer = httpx.post(f"{url}/work", json={}, headers=bearer("some-token"))
    assert any("the database is gone" in record.getMessage() for record in caplog.records)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == "store_unavailable"


class SlowRegistry(InMemoryClientRegistry):
    """Counts its reads, each of which takes a while, as a busy database's would."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.fail = False

    async def client_of(self, digest: str) -> str | None:
        self.reads += 1
        await asyncio.sleep(0.2)
        if self.fail:
            msg = "the database is gone"
            raise UnavailableError(msg)
        return await super().client_of(digest)


def test_requests_waiting_for_one_token_share_one_read_and_a_stale_answer_is_refreshed() -> None:
    registry = SlowRegistry()

    async def main() -> tuple[list[int], int, float, int, list[int]]:
        token = await registry.issue("caller")
        transport = httpx.ASGITransport(app=guarded_app(registry, cache_seconds=0.5))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def status() -> int:
                return (await http.post("/work", json={}, headers=bearer(token))).status_code

            burst = list(await asyncio.gather(*(status() for _ in range(20))))
            reads_for_burst = registry.reads
            await asyncio.sleep(0.6)  # stale now, but known: answered at once, refreshed behind
            started = time.monotonic()
            stale = await status()
            answered_in = time.monotonic() - started
            await asyncio.sleep(0.3)
            reads_after_refresh = registry.reads
            registry.fail = True
            await asyncio.sleep(1.1)  # past twice the cache's age: asked anew, and it fails
            failing = [await status()]
        return burst, reads_for_burst, answered_in, reads_after_refresh, [stale, *failing]

    burst, reads_for_burst, answered_in, reads_after_refresh, later = asyncio.run(main())
    assert burst == [200] * 20
    assert reads_for_burst == 1
    assert answered_in < 0.15
    assert reads_after_refresh == 2
    assert later == [200, 503]
