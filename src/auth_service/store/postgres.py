"""Credentials in PostgreSQL, through an asyncpg connection pool.

Counters are changed under a row lock (``SELECT ... FOR UPDATE``), so replicas
sharing the database count every failure exactly once. The tables live in
the connection's ``search_path``: give ``?search_path=NAME`` in the URL to
use a schema of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from auth_service.store.base import (
    Admitted,
    Attempt,
    CredentialStore,
    LockedOut,
    StoreUnavailableError,
    UnknownUser,
    UnknownUserError,
    UserExistsError,
)

if TYPE_CHECKING:
    from auth_service.lockout import LockoutPolicy

# _MIGRATIONS[n] takes the schema from version n to n + 1 (kept in auth_schema_version).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE credentials (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            failed_attempts INTEGER NOT NULL DEFAULT 0,
            window_started DOUBLE PRECISION NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE unknown_username_attempts (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            attempts BIGINT NOT NULL
        )
        """,
        "INSERT INTO unknown_username_attempts (id, attempts) VALUES (1, 0)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
# Serialises the migrations of replicas starting together (one key per schema).
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('auth-service:' || current_schema()))"

_DatabaseErrors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _unavailable(error: BaseException) -> StoreUnavailableError:
    # asyncpg's messages name the server and the failure, never the password of the URL.
    return StoreUnavailableError(f"PostgreSQL failed: {type(error).__name__}: {error}")


class PostgresCredentialStore(CredentialStore):
    """Credentials in PostgreSQL (see the module's description)."""

    def __init__(self, dsn: str, *, timeout_seconds: float, max_connections: int) -> None:
        """Describe the store; nothing is opened until :meth:`open`.

        Args:
            dsn: A ``postgresql://`` URL.
            timeout_seconds: How long connecting, and each statement, may take.
            max_connections: The size of the pool.
        """
        self._dsn = dsn
        self._timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool, and create or migrate the schema."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._max_connections,
                timeout=self._timeout_seconds,
                command_timeout=self._timeout_seconds,
            )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error
        try:
            await self._migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool's connections."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        """Query the schema."""
        try:
            await self._open_pool().fetchval("SELECT attempts FROM unknown_username_attempts")
        except _DatabaseErrors as error:
            raise _unavailable(error) from error

    async def add(self, username: str, password_hash: str) -> None:
        """Insert the user; see :meth:`CredentialStore.add`."""
        try:
            await self._open_pool().execute(
                "INSERT INTO credentials (username, password_hash) VALUES ($1, $2)",
                username,
                password_hash,
            )
        except asyncpg.UniqueViolationError as error:
            raise UserExistsError(username) from error
        except _DatabaseErrors as error:
            raise _unavailable(error) from error

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace the hash; see :meth:`CredentialStore.set_password_hash`."""
        try:
            status = await self._open_pool().execute(
                """
                UPDATE credentials SET password_hash = $2, failed_attempts = 0, window_started = 0
                WHERE username = $1
                """,
                username,
                password_hash,
            )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error
        if status == "UPDATE 0":
            raise UnknownUserError(username)

    async def remove(self, username: str) -> None:
        """Delete the user; see :meth:`CredentialStore.remove`."""
        try:
            status = await self._open_pool().execute(
                "DELETE FROM credentials WHERE username = $1", username
            )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error
        if status == "DELETE 0":
            raise UnknownUserError(username)

    async def contains(self, username: str) -> bool:
        """Tell whether the user exists."""
        try:
            found = await self._open_pool().fetchval(
                "SELECT EXISTS (SELECT 1 FROM credentials WHERE username = $1)", username
            )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error
        return bool(found)

    async def usernames(self) -> list[str]:
        """Return every username, in code point order whatever the database's collation."""
        try:
            rows = await self._open_pool().fetch(
                'SELECT username FROM credentials ORDER BY username COLLATE "C"'
            )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error
        return [row["username"] for row in rows]

    async def look_up(self, username: str, *, now: float, policy: LockoutPolicy) -> Attempt:
        """Find the hash and the lock; see :meth:`CredentialStore.look_up`."""
        try:
            row = await self._open_pool().fetchrow(
                """
                SELECT password_hash, failed_attempts, window_started FROM credentials
                WHERE username = $1
                """,
                username,
            )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error
        if row is None:
            return UnknownUser()
        refusal = policy.refusal(row["failed_attempts"], row["window_started"], now)
        if refusal is not None:
            return LockedOut(refusal.retry_after)
        return Admitted(row["password_hash"], row["failed_attempts"])

    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failure under a row lock; see :meth:`CredentialStore.record_failure`."""
        try:
            async with self._open_pool().acquire() as connection, connection.transaction():
                row = await connection.fetchrow(
                    """
                    SELECT failed_attempts, window_started FROM credentials
                    WHERE username = $1 FOR UPDATE
                    """,
                    username,
                )
                if row is None:
                    await connection.execute(
                        "UPDATE unknown_username_attempts SET attempts = attempts + 1 WHERE id = 1"
                    )
                    return
                counted = policy.count_failure(row["failed_attempts"], row["window_started"], now)
                await connection.execute(
                    """
                    UPDATE credentials SET failed_attempts = $2, window_started = $3
                    WHERE username = $1
                    """,
                    username,
                    counted.failures,
                    counted.window_started,
                )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error

    async def record_success(
        self, username: str, *, checked_hash: str, new_hash: str | None
    ) -> None:
        """Clear the failures; see :meth:`CredentialStore.record_success`."""
        try:
            await self._open_pool().execute(
                """
                UPDATE credentials SET
                    failed_attempts = 0,
                    window_started = 0,
                    password_hash = CASE
                        WHEN $3::text IS NOT NULL AND password_hash = $2 THEN $3
                        ELSE password_hash
                    END
                WHERE username = $1
                """,
                username,
                checked_hash,
                new_hash,
            )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            msg = "the credential store is not open"
            raise StoreUnavailableError(msg)
        return self._pool

    @staticmethod
    async def _migrate(pool: asyncpg.Pool) -> None:
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(_MIGRATION_LOCK)
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS auth_schema_version (version INTEGER NOT NULL)"
                )
                version = await connection.fetchval("SELECT max(version) FROM auth_schema_version")
                version = 0 if version is None else int(version)
                if version > SCHEMA_VERSION:
                    msg = (
                        f"the database schema is at version {version}, newer than this "
                        f"auth-service knows ({SCHEMA_VERSION})"
                    )
                    raise StoreUnavailableError(msg)
                for statements in _MIGRATIONS[version:]:
                    for statement in statements:
                        await connection.execute(statement)
                await connection.execute("DELETE FROM auth_schema_version")
                await connection.execute(
                    "INSERT INTO auth_schema_version (version) VALUES ($1)", SCHEMA_VERSION
                )
        except _DatabaseErrors as error:
            raise _unavailable(error) from error
