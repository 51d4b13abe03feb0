"""The shared PostgreSQL set-up, on a real server: every wait bounded, every failure the store's."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import asyncpg
import pytest

from servicekit.postgres import PostgresDatabase, PostgresSchema, quote_identifier
from tests.support.postgres import drop_schema
from tests.support.postgres import postgres_url as support_postgres_url

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

POSTGRES_URL_VARIABLE = "SERVICEKIT_TEST_POSTGRES_URL"
ITEMS = ("CREATE TABLE items (name text PRIMARY KEY)",)


class UnavailableError(Exception):
    """What the store under test raises for any failure of its database."""


@pytest.fixture(scope="module")
def postgres_url() -> str:
    return support_postgres_url(POSTGRES_URL_VARIABLE)


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """The name of a schema of the test's own, which the database under test creates."""
    name = f"servicekit_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        drop_schema(postgres_url, name)


def database(  # noqa: PLR0913 (the knobs a test turns)
    dsn: str,
    schema: str | None,
    *,
    migrations: Sequence[Sequence[str]] = (ITEMS,),
    timeout_seconds: float = 5.0,
    max_connections: int = 2,
    application_name: str = "servicekit-test",
) -> PostgresDatabase:
    tables = PostgresSchema(
        owner=application_name,
        version_table="test_schema_version",
        migrations=tuple(tuple(step) for step in migrations),
    )
    return PostgresDatabase(
        dsn,
        tables,
        unavailable=UnavailableError,
        timeout_seconds=timeout_seconds,
        max_connections=max_connections,
        schema=schema,
    )


def elapsed_since(started: float) -> float:
    return asyncio.get_running_loop().time() - started


def test_quote_identifier() -> None:
    assert quote_identifier("plain") == '"plain"'
    assert quote_identifier('we"ird') == '"we""ird"'


def test_migrations_run_once_even_when_processes_open_together(
    postgres_url: str, schema: str
) -> None:
    migrations = [ITEMS, ("INSERT INTO items VALUES ('once')",)]

    async def main() -> None:
        databases = [database(postgres_url, schema, migrations=migrations) for _ in range(4)]
        await asyncio.gather(*(db.open() for db in databases))
        try:
            assert [tuple(row) for row in await databases[0].fetch("SELECT name FROM items")] == [
                ("once",)
            ]
            assert await databases[1].fetchval("SELECT version FROM test_schema_version") == 2
        finally:
            await asyncio.gather(*(db.close() for db in databases))
        again = database(postgres_url, schema, migrations=migrations)
        await again.open()
        try:
            assert await again.fetchval("SELECT count(*) FROM items") == 1
        finally:
            await again.close()

    asyncio.run(main())


def test_a_newer_schema_is_refused(postgres_url: str, schema: str) -> None:
    async def main() -> None:
        db = database(postgres_url, schema)
        await db.open()
        await db.execute("UPDATE test_schema_version SET version = 9")
        await db.close()
        with pytest.raises(UnavailableError, match="schema version 9; this code knows 1"):
            await db.open()
        with pytest.raises(UnavailableError, match="not open"):
            await db.fetchval("SELECT 1")

    asyncio.run(main())


def test_a_statement_running_too_long_is_cancelled(postgres_url: str, schema: str) -> None:
    async def main() -> None:
        db = database(postgres_url, schema, timeout_seconds=0.3)
        await db.open()
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(UnavailableError, match="QueryCanceled") as caught:
                await db.fetchval("SELECT pg_sleep(30)")
            assert isinstance(caught.value.__cause__, asyncpg.QueryCanceledError)
            assert elapsed_since(started) < 5
            assert await db.fetchval("SELECT 1") == 1
        finally:
            await db.close()

    asyncio.run(main())


def test_waiting_for_a_pooled_connection_is_bounded(postgres_url: str, schema: str) -> None:
    async def main() -> None:
        db = database(postgres_url, schema, timeout_seconds=0.3, max_connections=1)
        await db.open()
        try:
            async with db.connection():
                started = asyncio.get_running_loop().time()
                with pytest.raises(UnavailableError, match="TimeoutError") as caught:
                    await db.fetchval("SELECT 1")
                assert isinstance(caught.value.__cause__, TimeoutError)
                assert elapsed_since(started) < 5
            assert await db.fetchval("SELECT 1") == 1
        finally:
            await db.close()

    asyncio.run(main())


def test_a_connection_cut_under_a_statement_is_unavailable(postgres_url: str, schema: str) -> None:
    application_name = f"servicekit-test-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        db = database(postgres_url, schema, application_name=application_name)
        await db.open()
        other = await asyncpg.connect(postgres_url)
        try:
            sleeping = asyncio.create_task(db.fetchval("SELECT pg_sleep(30)"))
            deadline = asyncio.get_running_loop().time() + 10
            while not await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND query LIKE 'SELECT pg_sleep%'",
                application_name,
            ):
                assert asyncio.get_running_loop().time() < deadline, "the statement never started"
                await asyncio.sleep(0.01)
            await other.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1",
                application_name,
            )
            with pytest.raises(UnavailableError, match="PostgreSQL failed"):
                await sleeping
            assert await db.fetchval("SELECT 1") == 1  # the pool connects afresh
        finally:
            await other.close()
            await db.close()

    asyncio.run(main())


def test_an_unreachable_server_is_unavailable() -> None:
    async def main() -> None:
        db = database("postgresql://127.0.0.1:9/nowhere", None, timeout_seconds=2)
        with pytest.raises(UnavailableError, match="PostgreSQL failed") as caught:
            await db.open()
        assert isinstance(caught.value.__cause__, OSError)

    asyncio.run(main())


def test_the_urls_password_is_never_in_a_message_nor_the_repr(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    # The server trusts every connection, so make it quote the password: as the database name.
    dsn = f"postgresql://postgres:hunter2@{parts.hostname}:{parts.port}/hunter2"

    async def main() -> None:
        db = database(dsn, None)
        assert "hunter2" not in repr(db)
        with pytest.raises(UnavailableError, match="PostgreSQL failed") as caught:
            await db.open()
        assert "hunter2" in str(caught.value.__cause__)
        assert "hunter2" not in str(caught.value)

    asyncio.run(main())


def test_close_does_not_wait_forever_for_a_connection_kept_in_use(
    postgres_url: str, schema: str
) -> None:
    async def main() -> None:
        db = database(postgres_url, schema, timeout_seconds=0.3)
        await db.open()
        kept = asyncio.Event()
        released = asyncio.Event()

        async def keep_a_connection() -> None:
            async with db.connection():
                kept.set()
                await released.wait()

        keeper = asyncio.create_task(keep_a_connection())
        await kept.wait()
        started = asyncio.get_running_loop().time()
        await db.close()
        assert elapsed_since(started) < 10
        with pytest.raises(UnavailableError, match="not open"):
            await db.fetchval("SELECT 1")
        released.set()
        await asyncio.gather(keeper, return_exceptions=True)

    asyncio.run(main())
