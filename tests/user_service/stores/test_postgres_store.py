"""What only the PostgreSQL store does: its schema, its failures and its purge of old keys."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from tests.support.servers import HOST, free_port
from user_service.accounts import Claimed, IdempotencyClaim, IdempotencyPolicy
from user_service.postgres_store import SCHEMA_VERSION, PostgresAccountStore, quote_identifier

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@asynccontextmanager
async def _connection_in(url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection whose unqualified table names resolve in ``schema``."""
    connection = await asyncpg.connect(
        url, timeout=5, server_settings={"search_path": quote_identifier(schema)}
    )
    try:
        yield connection
    finally:
        await connection.close()


def _unreachable_dsn() -> str:
    return f"postgresql://{HOST}:{free_port()}/nowhere"


def test_quote_identifier() -> None:
    assert quote_identifier("plain") == '"plain"'
    assert quote_identifier('we"ird') == '"we""ird"'


def test_ping_fails_before_open() -> None:
    async def main() -> None:
        store = PostgresAccountStore(_unreachable_dsn())
        with pytest.raises(RuntimeError, match="not open"):
            await store.ping()
        await store.close()

    asyncio.run(main())


def test_unreachable_server_fails_open_and_then_ping() -> None:
    async def main() -> None:
        store = PostgresAccountStore(_unreachable_dsn())
        with pytest.raises(ConnectionRefusedError):
            await store.open()
        with pytest.raises(RuntimeError, match="not open"):
            await store.ping()

    asyncio.run(main())


def test_ping_fails_after_close(postgres_url: str, postgres_schema: str) -> None:
    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=postgres_schema)
        await store.open()
        await store.ping()
        await store.close()
        with pytest.raises(RuntimeError, match="not open"):
            await store.ping()

    asyncio.run(main())


def test_tables_live_in_the_given_schema(postgres_url: str, postgres_schema: str) -> None:
    async def main() -> None:
        # With one pooled connection, every call reuses the one that ran the migration,
        # so this also shows that the pool's reset on release keeps the search_path.
        store = PostgresAccountStore(postgres_url, schema=postgres_schema, max_size=1)
        await store.open()
        try:
            await store.create("alice")
            await store.claim(IdempotencyClaim("key", "body"))
        finally:
            await store.close()
        async with _connection_in(postgres_url, postgres_schema) as connection:
            assert await connection.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
            assert await connection.fetchval("SELECT username FROM accounts") == "alice"
            assert await connection.fetchval("SELECT key FROM idempotency_keys") == "key"

    asyncio.run(main())


def test_a_missing_schema_is_created(postgres_url: str, postgres_schema: str) -> None:
    schema = f"{postgres_schema}_new"

    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=schema)
        try:
            await store.open()
            assert (await store.create("alice")).id == 1
            await store.close()
        finally:
            async with _connection_in(postgres_url, schema) as connection:
                await connection.execute(
                    f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE"
                )

    asyncio.run(main())


def test_a_newer_schema_is_refused(postgres_url: str, postgres_schema: str) -> None:
    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=postgres_schema)
        await store.open()
        await store.close()
        async with _connection_in(postgres_url, postgres_schema) as connection:
            await connection.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION + 1)
        with pytest.raises(RuntimeError, match="schema version"):
            await store.open()
        with pytest.raises(RuntimeError, match="not open"):
            await store.ping()

    asyncio.run(main())


def test_expired_keys_are_purged_when_a_key_is_claimed(
    postgres_url: str, postgres_schema: str
) -> None:
    async def main() -> None:
        policy = IdempotencyPolicy(ttl=timedelta(milliseconds=50))
        store = PostgresAccountStore(postgres_url, policy=policy, schema=postgres_schema)
        await store.open()
        try:
            await store.claim(IdempotencyClaim("old", "body"))
            await asyncio.sleep(0.1)
            assert await store.claim(IdempotencyClaim("new", "body")) == Claimed()
        finally:
            await store.close()
        async with _connection_in(postgres_url, postgres_schema) as connection:
            rows = await connection.fetch("SELECT key FROM idempotency_keys")
        assert [row["key"] for row in rows] == ["new"]

    asyncio.run(main())
