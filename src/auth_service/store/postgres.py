"""Credentials in PostgreSQL, through :class:`servicekit.postgres.PostgresDatabase`.

Counters are changed under a row lock (``SELECT ... FOR UPDATE``), so replicas
sharing the database count every failure exactly once. The tables live in
the connection's ``search_path``: give ``?search_path=NAME`` in the URL to
use a schema of their own. Connecting, waiting for a pooled connection and
each statement are bounded by ``timeout_seconds``.
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
from servicekit.postgres import PostgresDatabase, PostgresSchema
from servicekit.stores import DatabaseBacked

if TYPE_CHECKING:
    from auth_service.lockout import LockoutPolicy

_TABLES = PostgresSchema(
    owner="auth-service",
    version_table="auth_schema_version",
    migrations=(
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
    ),
)
SCHEMA_VERSION = _TABLES.version


class PostgresCredentialStore(DatabaseBacked[PostgresDatabase], CredentialStore):
    """Credentials in PostgreSQL (see the module's description)."""

    PING_QUERY = "SELECT attempts FROM unknown_username_attempts"

    def __init__(self, dsn: str, *, timeout_seconds: float, max_connections: int) -> None:
        """Describe the store; nothing is opened until :meth:`open`.

        Args:
            dsn: A ``postgresql://`` URL.
            timeout_seconds: How long connecting, waiting for a pooled
                connection, and each statement, may take.
            max_connections: The size of the pool.
        """
        self._database = PostgresDatabase(
            dsn,
            _TABLES,
            unavailable=StoreUnavailableError,
            timeout_seconds=timeout_seconds,
            max_connections=max_connections,
        )

    async def add(self, username: str, password_hash: str) -> None:
        """Insert the user; see :meth:`CredentialStore.add`."""
        async with self._database.connection() as connection:
            try:
                await connection.execute(
                    "INSERT INTO credentials (username, password_hash) VALUES ($1, $2)",
                    username,
                    password_hash,
                )
            except asyncpg.UniqueViolationError as error:
                raise UserExistsError(username) from error

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace the hash; see :meth:`CredentialStore.set_password_hash`."""
        status = await self._database.execute(
            """
            UPDATE credentials SET password_hash = $2, failed_attempts = 0, window_started = 0
            WHERE username = $1
            """,
            username,
            password_hash,
        )
        if status == "UPDATE 0":
            raise UnknownUserError(username)

    async def remove(self, username: str) -> None:
        """Delete the user; see :meth:`CredentialStore.remove`."""
        status = await self._database.execute(
            "DELETE FROM credentials WHERE username = $1", username
        )
        if status == "DELETE 0":
            raise UnknownUserError(username)

    async def contains(self, username: str) -> bool:
        """Tell whether the user exists."""
        found = await self._database.fetchval(
            "SELECT EXISTS (SELECT 1 FROM credentials WHERE username = $1)", username
        )
        return bool(found)

    async def usernames(self) -> list[str]:
        """Return every username, in code point order whatever the database's collation."""
        rows = await self._database.fetch(
            'SELECT username FROM credentials ORDER BY username COLLATE "C"'
        )
        return [row["username"] for row in rows]

    async def look_up(self, username: str, *, now: float, policy: LockoutPolicy) -> Attempt:
        """Find the hash and the lock; see :meth:`CredentialStore.look_up`."""
        row = await self._database.fetchrow(
            """
            SELECT password_hash, failed_attempts, window_started FROM credentials
            WHERE username = $1
            """,
            username,
        )
        if row is None:
            return UnknownUser()
        refusal = policy.refusal(row["failed_attempts"], row["window_started"], now)
        if refusal is not None:
            return LockedOut(refusal.retry_after)
        return Admitted(row["password_hash"], row["failed_attempts"])

    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failure under a row lock; see :meth:`CredentialStore.record_failure`."""
        async with self._database.transaction() as connection:
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

    async def record_success(
        self, username: str, *, checked_hash: str, new_hash: str | None
    ) -> None:
        """Clear the failures; see :meth:`CredentialStore.record_success`."""
        await self._database.execute(
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
