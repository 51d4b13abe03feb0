"""Accounts kept in PostgreSQL, shared by any number of processes and machines."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import asyncpg

from user_service.accounts import (
    AccountStoreUnavailableError,
    Claimed,
    ClaimOutcome,
    Completed,
    IdempotencyClaim,
    IdempotencyPolicy,
    InFlight,
    Mismatch,
    UserAccount,
    UsernameTakenError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from asyncpg.pool import PoolConnectionProxy

_P = ParamSpec("_P")
_T = TypeVar("_T")
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


def _reports_unreachable(
    method: Callable[_P, Coroutine[object, object, _T]],
) -> Callable[_P, Coroutine[object, object, _T]]:
    """Turn the driver's connection failures into :class:`AccountStoreUnavailableError`."""

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(*args, **kwargs)
        except _UNREACHABLE as error:
            msg = f"the account database is unavailable: {type(error).__name__}"
            raise AccountStoreUnavailableError(msg) from error

    return wrapper


TIMEOUT = 5.0
"""Seconds allowed to open a connection, and for :meth:`PostgresAccountStore.ping`."""

# Ids are bigint; a larger Python int could not even be sent as a parameter.
_MIN_ID = -(2**63)
_MAX_ID = 2**63 - 1

# _MIGRATIONS[n] takes the schema from version n to n + 1 (kept in the schema_version table).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE accounts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            username text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        """
        CREATE TABLE idempotency_keys (
            key text PRIMARY KEY,
            fingerprint text NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT now(),
            account_id bigint REFERENCES accounts (id)
        )
        """,
        "CREATE INDEX idempotency_keys_claimed_at ON idempotency_keys (claimed_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_MIGRATION_LOCK = "user_service account store migration"
_CREATE_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version integer NOT NULL
    )
"""
_SET_VERSION = """
    INSERT INTO schema_version (version) VALUES ($1)
    ON CONFLICT (singleton) DO UPDATE SET version = excluded.version
"""
_INSERT_ACCOUNT = """
    INSERT INTO accounts (username) VALUES ($1)
    ON CONFLICT (username) DO NOTHING
    RETURNING id, created_at
"""
_COMPLETE_KEY = """
    INSERT INTO idempotency_keys (key, fingerprint, account_id) VALUES ($1, $2, $3)
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        claimed_at = excluded.claimed_at,
        account_id = excluded.account_id
"""
# Takes the key if it is free, expired, or an abandoned claim. When it does not,
# ON CONFLICT DO UPDATE still locks the row until the transaction ends, so the
# follow-up _HELD_KEY reads a row that nobody can change or delete meanwhile.
_TAKE_KEY = """
    INSERT INTO idempotency_keys AS k (key, fingerprint) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        claimed_at = excluded.claimed_at,
        account_id = NULL
    WHERE k.claimed_at <= now() - $3::interval
        OR (k.account_id IS NULL AND k.claimed_at <= now() - $4::interval)
    RETURNING true
"""
_HELD_KEY = """
    SELECT k.fingerprint, a.id, a.username, a.created_at
    FROM idempotency_keys AS k LEFT JOIN accounts AS a ON a.id = k.account_id
    WHERE k.key = $1
"""
# Bounded, and skips rows other transactions hold, so that it never waits on them
# nor deadlocks with them; it runs outside the claim's transaction for the same reason.
_PURGE_KEYS = """
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys WHERE claimed_at <= now() - $1::interval
        ORDER BY claimed_at LIMIT 100
        FOR UPDATE SKIP LOCKED
    )
"""


def quote_identifier(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier, such as a schema name.

    Args:
        name: The identifier, as it is to be stored.

    Returns:
        The identifier in double quotes, any double quote in it doubled.
    """
    return '"' + name.replace('"', '""') + '"'


class PostgresAccountStore:
    """Accounts in PostgreSQL, through an asyncpg connection pool.

    Uniqueness and idempotency rest on the database's own constraints and row
    locks, so any number of processes may share one database. Timestamps come
    from the database's clock.
    """

    def __init__(
        self,
        dsn: str,
        *,
        policy: IdempotencyPolicy | None = None,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        """Describe a store; nothing is opened until :meth:`open`.

        Args:
            dsn: A ``postgresql://`` URL, or a libpq connection string.
            policy: How long idempotency keys live.
            schema: The schema holding the tables, created if missing; the
                connection's default ``search_path`` when omitted.
            min_size: Connections the pool keeps open.
            max_size: Connections the pool opens at most.
        """
        self._dsn = dsn
        self._policy = policy or IdempotencyPolicy()
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def open(self) -> None:
        """Create the pool, and create or migrate the schema; does nothing if already open."""
        if self._pool is not None:
            return
        server_settings = {"application_name": "user-service"}
        if self._schema is not None:
            server_settings["search_path"] = quote_identifier(self._schema)
        pool = await asyncpg.create_pool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=TIMEOUT,
            server_settings=server_settings,
        )
        try:
            async with pool.acquire() as connection:
                await self._migrate(connection)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool, once the connections in use are released."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @_reports_unreachable
    async def ping(self) -> None:
        """Raise if the database cannot be reached within :data:`TIMEOUT` seconds."""
        async with self._require_pool().acquire(timeout=TIMEOUT) as connection:
            await connection.fetchval("SELECT 1", timeout=TIMEOUT)

    @_reports_unreachable
    async def create(
        self, username: str, *, idempotency: IdempotencyClaim | None = None
    ) -> UserAccount:
        """Create and store a new account.

        Args:
            username: Canonical username for the new account.
            idempotency: A claim made by :meth:`claim`, completed with the
                account in the same transaction.

        Returns:
            The created account.

        Raises:
            UsernameTakenError: If an account with that username exists.
        """
        async with self._require_pool().acquire() as connection, connection.transaction():
            # DO NOTHING (not an exception) also covers a racing insert: it waits
            # for that transaction, and inserts nothing if it commits.
            row = await connection.fetchrow(_INSERT_ACCOUNT, username)
            if row is None:
                raise UsernameTakenError(username)
            if idempotency is not None:
                await connection.execute(
                    _COMPLETE_KEY, idempotency.key, idempotency.fingerprint, row["id"]
                )
        return UserAccount(id=row["id"], username=username, created_at=row["created_at"])

    @_reports_unreachable
    async def get(self, account_id: int) -> UserAccount | None:
        """Return the account with ``account_id``, or ``None``."""
        if not _MIN_ID <= account_id <= _MAX_ID:
            return None
        row = await self._require_pool().fetchrow(
            "SELECT id, username, created_at FROM accounts WHERE id = $1", account_id
        )
        if row is None:
            return None
        return UserAccount(id=row["id"], username=row["username"], created_at=row["created_at"])

    @_reports_unreachable
    async def claim(self, claim: IdempotencyClaim) -> ClaimOutcome:
        """Claim an idempotency key for a request about to run.

        Afterwards, some expired keys are purged.
        """
        policy = self._policy
        async with self._require_pool().acquire() as connection:
            async with connection.transaction():
                if await connection.fetchval(
                    _TAKE_KEY, claim.key, claim.fingerprint, policy.ttl, policy.lease
                ):
                    outcome: ClaimOutcome = Claimed()
                else:
                    outcome = _held_outcome(await connection.fetchrow(_HELD_KEY, claim.key), claim)
            await connection.execute(_PURGE_KEYS, policy.ttl)
        return outcome

    @_reports_unreachable
    async def release(self, claim: IdempotencyClaim) -> None:
        """Give up an unfinished claim, so that a retry runs afresh."""
        await self._require_pool().execute(
            "DELETE FROM idempotency_keys WHERE key = $1 AND fingerprint = $2"
            " AND account_id IS NULL",
            claim.key,
            claim.fingerprint,
        )

    @_reports_unreachable
    async def reset(self) -> None:
        """Remove every account and key, and start ids at 1 again."""
        await self._require_pool().execute("TRUNCATE idempotency_keys, accounts RESTART IDENTITY")

    async def _migrate(self, connection: PoolConnectionProxy[asyncpg.Record]) -> None:
        async with connection.transaction():
            # Processes starting together would otherwise race on CREATE TABLE.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _MIGRATION_LOCK)
            if self._schema is not None and not await connection.fetchval(
                "SELECT true FROM pg_namespace WHERE nspname = $1", self._schema
            ):
                await connection.execute(f"CREATE SCHEMA {quote_identifier(self._schema)}")
            await connection.execute(_CREATE_VERSION_TABLE)
            version = await connection.fetchval("SELECT version FROM schema_version") or 0
            if version > SCHEMA_VERSION:
                msg = f"the database has schema version {version}; this code knows {SCHEMA_VERSION}"
                raise RuntimeError(msg)
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    await connection.execute(statement)
            await connection.execute(_SET_VERSION, SCHEMA_VERSION)

    def _require_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            msg = "the PostgreSQL account store is not open"
            raise RuntimeError(msg)
        return self._pool


def _held_outcome(held: asyncpg.Record | None, claim: IdempotencyClaim) -> ClaimOutcome:
    if held is None:
        msg = f"idempotency key row vanished while locked: {claim.key!r}"
        raise RuntimeError(msg)
    if held["fingerprint"] != claim.fingerprint:
        return Mismatch()
    if held["id"] is None:
        return InFlight()
    return Completed(
        UserAccount(id=held["id"], username=held["username"], created_at=held["created_at"])
    )
