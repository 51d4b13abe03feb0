"""What only the PostgreSQL store does: its schema, its failures and its purge of old keys."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from servicekit.postgres import quote_identifier
from tests.support.servers import HOST, free_port
from tests.user_service.stores.clock import ManualClock, policy_on
from user_service.accounts import AccountStoreUnavailableError, Claimed, IdempotencyClaim
from user_service.postgres_store import SCHEMA_VERSION, PostgresAccountStore

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


def test_ping_fails_before_open() -> None:
    async def main() -> None:
        store = PostgresAccountStore(_unreachable_dsn())
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()
        await store.close()

    asyncio.run(main())


def test_unreachable_server_fails_open_and_then_ping() -> None:
    async def main() -> None:
        store = PostgresAccountStore(_unreachable_dsn(), timeout_seconds=2)
        with pytest.raises(AccountStoreUnavailableError, match="PostgreSQL") as caught:
            await store.open()
        assert isinstance(caught.value.__cause__, OSError)
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()

    asyncio.run(main())


def test_ping_fails_after_close(postgres_url: str, postgres_schema: str) -> None:
    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=postgres_schema)
        await store.open()
        await store.ping()
        await store.close()
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.create("alice")

    asyncio.run(main())


def test_tables_live_in_the_given_schema(postgres_url: str, postgres_schema: str) -> None:
    async def main() -> None:
        # With one pooled connection, every call reuses the one that ran the migration,
        # so this also shows that the pool's reset on release keeps the search_path.
        store = PostgresAccountStore(postgres_url, schema=postgres_schema, max_connections=1)
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
        with pytest.raises(AccountStoreUnavailableError, match="schema version"):
            await store.open()
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()

    asyncio.run(main())


def test_expired_keys_are_purged_when_a_key_is_claimed(
    postgres_url: str, postgres_schema: str
) -> None:
    clock = ManualClock()

    async def main() -> None:
        policy = policy_on(clock, ttl=timedelta(hours=1), lease=timedelta(minutes=1))
        store = PostgresAccountStore(postgres_url, policy=policy, schema=postgres_schema)
        await store.open()
        try:
            await store.claim(IdempotencyClaim("old", "body"))
            clock.advance(timedelta(hours=1))
            assert await store.claim(IdempotencyClaim("new", "body")) == Claimed()
        finally:
            await store.close()
        async with _connection_in(postgres_url, postgres_schema) as connection:
            rows = await connection.fetch("SELECT key FROM idempotency_keys")
        assert [row["key"] for row in rows] == ["new"]

    asyncio.run(main())


BLOCKED_BY = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"


async def _until_blocked_by(watcher: asyncpg.Connection, blocker: asyncpg.Connection) -> None:
    """Wait until some backend waits for a lock that ``blocker`` holds."""
    deadline = asyncio.get_running_loop().time() + 10
    while not await watcher.fetchval(BLOCKED_BY, blocker.get_server_pid()):
        assert asyncio.get_running_loop().time() < deadline, "nothing came to wait for the lock"
        await asyncio.sleep(0.01)


def test_a_row_lock_held_elsewhere_times_out_as_unavailable(
    postgres_url: str, postgres_schema: str
) -> None:
    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=postgres_schema, timeout_seconds=0.5)
        await store.open()
        try:
            await store.claim(IdempotencyClaim("key-1", "alice"))
            async with _connection_in(postgres_url, postgres_schema) as other:
                transaction = other.transaction()
                await transaction.start()
                await other.execute("INSERT INTO accounts (username) VALUES ('alice')")
                await other.execute("SELECT 1 FROM idempotency_keys WHERE key = 'key-1' FOR UPDATE")
                started = asyncio.get_running_loop().time()
                with pytest.raises(AccountStoreUnavailableError, match="QueryCanceled") as caught:
                    await store.create("alice")
                assert isinstance(caught.value.__cause__, asyncpg.QueryCanceledError)
                with pytest.raises(AccountStoreUnavailableError, match="QueryCanceled"):
                    await store.claim(IdempotencyClaim("key-1", "alice"))
                # Each waited out its half second, not more: nothing hangs.
                assert asyncio.get_running_loop().time() - started < 5
                await transaction.rollback()
            assert (await store.create("alice")).username == "alice"
        finally:
            await store.close()

    asyncio.run(main())


def test_a_deadlock_is_unavailable(postgres_url: str, postgres_schema: str) -> None:
    claim = IdempotencyClaim("key-1", "bob")

    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=postgres_schema, timeout_seconds=20)
        await store.open()
        try:
            await store.claim(claim)
            async with (
                _connection_in(postgres_url, postgres_schema) as other,
                _connection_in(postgres_url, postgres_schema) as watcher,
            ):
                transaction = other.transaction()
                await transaction.start()
                # The store's transaction, waiting for 1 s (the default), finds the deadlock first.
                await other.execute("SET LOCAL deadlock_timeout = '30s'")
                await other.execute("UPDATE idempotency_keys SET claimed_at = claimed_at")
                creating = asyncio.create_task(store.create("bob", idempotency=claim))
                await _until_blocked_by(watcher, other)
                await other.execute("INSERT INTO accounts (username) VALUES ('bob')")
                with pytest.raises(AccountStoreUnavailableError, match="Deadlock") as caught:
                    await creating
                assert isinstance(caught.value.__cause__, asyncpg.DeadlockDetectedError)
                await transaction.rollback()
        finally:
            await store.close()

    asyncio.run(main())


def test_any_other_database_error_is_unavailable(postgres_url: str, postgres_schema: str) -> None:
    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=postgres_schema)
        await store.open()
        try:
            async with _connection_in(postgres_url, postgres_schema) as other:
                await other.execute("DROP TABLE idempotency_keys")
            with pytest.raises(AccountStoreUnavailableError, match="UndefinedTable") as caught:
                await store.claim(IdempotencyClaim("key-1", "alice"))
            assert isinstance(caught.value.__cause__, asyncpg.UndefinedTableError)
        finally:
            await store.close()

    asyncio.run(main())


def test_a_create_arriving_while_the_store_closes_is_unavailable(
    postgres_url: str, postgres_schema: str
) -> None:
    async def main() -> None:
        store = PostgresAccountStore(postgres_url, schema=postgres_schema)
        await store.open()
        async with (
            _connection_in(postgres_url, postgres_schema) as other,
            _connection_in(postgres_url, postgres_schema) as watcher,
        ):
            transaction = other.transaction()
            await transaction.start()
            await other.execute("INSERT INTO accounts (username) VALUES ('alice')")
            creating = asyncio.create_task(store.create("alice"))
            await _until_blocked_by(watcher, other)
            closing = asyncio.create_task(store.close())
            await asyncio.sleep(0)
            with pytest.raises(AccountStoreUnavailableError, match="not open"):
                await store.create("bob")
            assert not closing.done()
            await transaction.rollback()
        # The create already running finishes before the pool closes.
        assert (await creating).username == "alice"
        await closing

    asyncio.run(main())
