"""Credentials in PostgreSQL, through :class:`servicekit.postgres.PostgresDatabase`.

Counters are changed under a row lock (``SELECT ... FOR UPDATE``), so replicas
sharing the database count every failure exactly once. The row of an unknown
name is made with ``INSERT ... ON CONFLICT DO NOTHING`` (a row another replica
made meanwhile is counted on, anew), which also locks the count of such rows
until the transaction ends, so replicas keep to the cap. The tables live in
the connection's ``search_path``: give ``?search_path=NAME`` in the URL to
use a schema of their own. Connecting, waiting for a pooled connection and
each statement are bounded by ``timeout_seconds``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from auth_service.store.base import (
    CLIENT_TOKENS_TABLE,
    Attempt,
    CredentialStore,
    NameDigest,
    StoreUnavailableError,
    UnknownUserError,
    UserExistsError,
    attempt_of,
)
from servicekit.client_tokens import PostgresClientRegistry, postgres_migration
from servicekit.postgres import PostgresDatabase, PostgresSchema
from servicekit.stores import DatabaseBacked

if TYPE_CHECKING:
    from auth_service.lockout import Counted, LockoutPolicy
    from servicekit.postgres import Connection

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
        postgres_migration(CLIENT_TOKENS_TABLE),
        # Failures of names that are not users, under a keyed digest of the name; the
        # key (256 bits from the server's strong random source) is made once, here.
        (
            "DROP TABLE unknown_username_attempts",
            """
            CREATE TABLE unknown_name_failures (
                digest BYTEA PRIMARY KEY,
                failed_attempts INTEGER NOT NULL,
                window_started DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE INDEX unknown_name_failures_by_window ON unknown_name_failures (window_started)
            """,
            """
            CREATE TABLE unknown_name_tracking (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                digest_key BYTEA NOT NULL,
                tracked BIGINT NOT NULL
            )
            """,
            """
            INSERT INTO unknown_name_tracking (id, digest_key, tracked) VALUES (
                1, sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())), 0
            )
            """,
        ),
    ),
)
SCHEMA_VERSION = _TABLES.version

# Both joins run for every name, a user's or not, so the work is the same.
_COUNTERS = """
    SELECT
        c.password_hash,
        coalesce(c.failed_attempts, u.failed_attempts, 0) AS failed_attempts,
        coalesce(c.window_started, u.window_started, 0) AS window_started
    FROM (VALUES ($1::text, $2::bytea)) AS wanted (username, digest)
    LEFT JOIN credentials AS c ON c.username = wanted.username
    LEFT JOIN unknown_name_failures AS u ON u.digest = wanted.digest
"""

# The same two rows, locked (FOR UPDATE cannot lock the nullable side of a join).
_LOCKED_COUNTERS = """
    WITH known AS (
        SELECT failed_attempts, window_started FROM credentials
        WHERE username = $1 FOR UPDATE
    ), unknown AS (
        SELECT failed_attempts, window_started FROM unknown_name_failures
        WHERE digest = $2 FOR UPDATE
    )
    SELECT true AS known, failed_attempts, window_started FROM known
    UNION ALL
    SELECT false, failed_attempts, window_started FROM unknown
"""

# Gives the rows kept after the new one, or no row if another replica made it first.
_ADD_UNKNOWN_NAME = """
    WITH made AS (
        INSERT INTO unknown_name_failures (digest, failed_attempts, window_started)
        VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING
        RETURNING digest
    )
    UPDATE unknown_name_tracking SET tracked = tracked + 1
    WHERE EXISTS (SELECT FROM made)
    RETURNING tracked
"""

_DELETE_EXPIRED = """
    WITH gone AS (
        DELETE FROM unknown_name_failures WHERE window_started <= $1 AND digest <> $2
        RETURNING digest
    )
    UPDATE unknown_name_tracking SET tracked = tracked - (SELECT count(*) FROM gone)
    RETURNING tracked
"""

_DELETE_OLDEST = """
    WITH gone AS (
        DELETE FROM unknown_name_failures WHERE digest IN (
            SELECT digest FROM unknown_name_failures WHERE digest <> $1
            ORDER BY window_started LIMIT $2
        )
        RETURNING digest
    )
    UPDATE unknown_name_tracking SET tracked = tracked - (SELECT count(*) FROM gone)
    RETURNING tracked
"""

# A name made by another replica between the read and the insert is counted anew;
# it cannot happen again and again but by a flood deleting that very row each time.
_RACES_TO_RETRY = 3


async def _count_failure(
    connection: Connection, username: str, digest: bytes, *, now: float, policy: LockoutPolicy
) -> bool:
    rows = {row["known"]: row for row in await connection.fetch(_LOCKED_COUNTERS, username, digest)}
    row = rows.get(True) or rows.get(False)
    if row is None:
        counted = policy.count_failure(0, 0, now)
        return await _add_unknown_name(connection, digest, counted, now=now, policy=policy)
    counted = policy.count_failure(row["failed_attempts"], row["window_started"], now)
    if row["known"]:
        await connection.execute(
            "UPDATE credentials SET failed_attempts = $2, window_started = $3 WHERE username = $1",
            username,
            counted.failures,
            counted.window_started,
        )
    else:
        await connection.execute(
            """
            UPDATE unknown_name_failures SET failed_attempts = $2, window_started = $3
            WHERE digest = $1
            """,
            digest,
            counted.failures,
            counted.window_started,
        )
    return True


async def _add_unknown_name(
    connection: Connection,
    digest: bytes,
    counted: Counted,
    *,
    now: float,
    policy: LockoutPolicy,
) -> bool:
    # The row is made, then the rows over the cap go, in the same transaction; the
    # count of rows stays locked until it commits, so replicas trim one at a time.
    tracked = await connection.fetchval(
        _ADD_UNKNOWN_NAME, digest, counted.failures, counted.window_started
    )
    if tracked is None:
        return False
    if policy.excess_unknown_names(tracked):
        tracked = await connection.fetchval(_DELETE_EXPIRED, policy.expired_before(now), digest)
        excess = policy.excess_unknown_names(tracked)
        if excess:
            await connection.fetchval(_DELETE_OLDEST, digest, excess)
    return True


class PostgresCredentialStore(DatabaseBacked[PostgresDatabase], CredentialStore):
    """Credentials in PostgreSQL (see the module's description)."""

    PING_QUERY = "SELECT tracked FROM unknown_name_tracking"

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
        self.clients = PostgresClientRegistry(self._database, table=CLIENT_TOKENS_TABLE)
        self._digest = NameDigest()

    async def open(self) -> None:
        """Connect, migrate, and read the key of the unknown names' digests."""
        await self._database.open()
        try:
            key = await self._database.fetchval("SELECT digest_key FROM unknown_name_tracking")
        except BaseException:
            await self._database.close()
            raise
        self._digest.use_key(key)

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
        """Find the hash and the lock in one read; see :meth:`CredentialStore.look_up`."""
        row = await self._database.fetchrow(_COUNTERS, username, self._digest(username))
        if row is None:  # pragma: no cover (the query always gives one row)
            msg = "the look-up of a username gave no row"
            raise StoreUnavailableError(msg)
        return attempt_of(
            row["password_hash"],
            row["failed_attempts"],
            row["window_started"],
            now=now,
            policy=policy,
        )

    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failure under row locks; see :meth:`CredentialStore.record_failure`."""
        digest = self._digest(username)
        for _ in range(_RACES_TO_RETRY):
            async with self._database.transaction() as connection:
                if await _count_failure(connection, username, digest, now=now, policy=policy):
                    return
        msg = "the failure of an unknown name could not be counted: its row kept changing"
        raise StoreUnavailableError(msg)

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
