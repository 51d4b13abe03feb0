"""Credentials in a SQLite file, through :class:`servicekit.sqlite.SqliteDatabase`.

Reads and writes run on threads of their own, so no call blocks the event
loop. The file is in WAL mode with ``synchronous=FULL`` (a committed failure
count survives a power cut), and every write is a transaction that takes the
write lock at its start, waiting up to the timeout for another process's, so
several processes (``serve --workers N``, the command line) can share it.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from typing import TYPE_CHECKING

from auth_service.store.base import (
    CLIENT_TOKENS_TABLE,
    NAME_KEY_BYTES,
    Attempt,
    CredentialStore,
    NameDigest,
    StoreUnavailableError,
    UnknownUserError,
    UserExistsError,
    attempt_of,
)
from servicekit.client_tokens import SqliteClientRegistry, sqlite_migration
from servicekit.sqlite import SqliteDatabase
from servicekit.stores import DatabaseBacked
from usernames import InvalidUsernameError, canonical_username

if TYPE_CHECKING:
    from pathlib import Path

    from auth_service.lockout import Counted, LockoutPolicy

_logger = logging.getLogger(__name__)


def _create_credentials(connection: sqlite3.Connection) -> None:
    # The table of the first release, which kept no schema version: IF NOT
    # EXISTS lets its files join the migrations here.
    connection.execute(
        """
        CREATE TABLE IF NOT EXISTS credentials (
            username TEXT PRIMARY KEY NOT NULL,
            password_hash TEXT NOT NULL
        )
        """
    )


def _add_lockout(connection: sqlite3.Connection) -> None:
    connection.execute(
        "ALTER TABLE credentials ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0"
    )
    connection.execute("ALTER TABLE credentials ADD COLUMN window_started REAL NOT NULL DEFAULT 0")
    connection.execute(
        """
        CREATE TABLE unknown_username_attempts (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            attempts INTEGER NOT NULL
        )
        """
    )
    connection.execute("INSERT INTO unknown_username_attempts (id, attempts) VALUES (1, 0)")
    _canonicalise_usernames(connection)


def _canonicalise_usernames(connection: sqlite3.Connection) -> None:
    # The first release stored names as typed; they are now looked up in canonical form.
    rows = connection.execute("SELECT username FROM credentials").fetchall()
    for (username,) in rows:
        try:
            canonical = canonical_username(username)
        except InvalidUsernameError as error:
            _logger.warning("a stored username is not valid (%s); that user cannot sign in", error)
            continue
        if canonical == username:
            continue
        try:
            connection.execute(
                "UPDATE credentials SET username = ? WHERE username = ?", (canonical, username)
            )
        except sqlite3.IntegrityError:
            _logger.warning(
                "two stored usernames have the canonical form %r; only that one can sign in",
                canonical,
            )


def _count_unknown_names(connection: sqlite3.Connection) -> None:
    # Failures of names that are not users, under a keyed digest of the name; the
    # key is made here, once, and kept in the database for every process to share.
    connection.execute("DROP TABLE unknown_username_attempts")
    connection.execute(
        """
        CREATE TABLE unknown_name_failures (
            digest BLOB PRIMARY KEY NOT NULL,
            failed_attempts INTEGER NOT NULL,
            window_started REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    connection.execute(
        "CREATE INDEX unknown_name_failures_by_window ON unknown_name_failures (window_started)"
    )
    connection.execute(
        """
        CREATE TABLE unknown_name_tracking (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            digest_key BLOB NOT NULL,
            tracked INTEGER NOT NULL
        )
        """
    )
    connection.execute(
        "INSERT INTO unknown_name_tracking (id, digest_key, tracked) VALUES (1, ?, 0)",
        (secrets.token_bytes(NAME_KEY_BYTES),),
    )


# Both joins run for every name, a user's or not, so the work is the same.
_COUNTERS = """
    SELECT
        c.password_hash,
        coalesce(c.failed_attempts, u.failed_attempts, 0),
        coalesce(c.window_started, u.window_started, 0),
        u.digest IS NOT NULL
    FROM (SELECT ? AS username, ? AS digest) AS wanted
    LEFT JOIN credentials AS c ON c.username = wanted.username
    LEFT JOIN unknown_name_failures AS u ON u.digest = wanted.digest
"""


def _add_unknown_name(
    connection: sqlite3.Connection,
    digest: bytes,
    counted: Counted,
    *,
    now: float,
    policy: LockoutPolicy,
) -> None:
    # The row is made, then the rows over the cap go, in the same transaction.
    connection.execute(
        "INSERT INTO unknown_name_failures (digest, failed_attempts, window_started)"
        " VALUES (?, ?, ?)",
        (digest, counted.failures, counted.window_started),
    )
    [(tracked,)] = connection.execute(
        "UPDATE unknown_name_tracking SET tracked = tracked + 1 RETURNING tracked"
    ).fetchall()
    if policy.excess_unknown_names(tracked) == 0:
        return
    gone = connection.execute(
        "DELETE FROM unknown_name_failures WHERE window_started <= ? AND digest <> ?",
        (policy.expired_before(now), digest),
    ).rowcount
    excess = policy.excess_unknown_names(tracked - gone)
    if excess:
        gone += connection.execute(
            """
            DELETE FROM unknown_name_failures WHERE digest IN (
                SELECT digest FROM unknown_name_failures WHERE digest <> ?
                ORDER BY window_started LIMIT ?
            )
            """,
            (digest, excess),
        ).rowcount
    connection.execute("UPDATE unknown_name_tracking SET tracked = tracked - ?", (gone,))


# _MIGRATIONS[n] takes the schema from version n to n + 1 (kept in PRAGMA user_version).
_MIGRATIONS = (
    _create_credentials,
    _add_lockout,
    sqlite_migration(CLIENT_TOKENS_TABLE),
    _count_unknown_names,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SqliteCredentialStore(DatabaseBacked[SqliteDatabase], CredentialStore):
    """Credentials in a SQLite file (see the module's description)."""

    PING_QUERY = "SELECT tracked FROM unknown_name_tracking"

    def __init__(self, path: Path, *, timeout_seconds: float) -> None:
        """Describe the store; nothing is opened until :meth:`open`.

        Args:
            path: The database file, relative to the working directory or
                absolute. Its folder and the file (readable by its owner only)
                are created if missing.
            timeout_seconds: How long a call waits for another process's write lock.
        """
        self._database = SqliteDatabase(
            path,
            migrations=_MIGRATIONS,
            timeout_seconds=timeout_seconds,
            unavailable=StoreUnavailableError,
        )
        self.clients = SqliteClientRegistry(self._database, table=CLIENT_TOKENS_TABLE)
        self._digest = NameDigest()

    async def open(self) -> None:
        """Open the file, migrate it, and read the key of the unknown names' digests."""
        await self._database.open()
        try:
            key = await self._database.read(
                lambda connection: connection.execute(
                    "SELECT digest_key FROM unknown_name_tracking"
                ).fetchone()[0]
            )
        except BaseException:
            await self._database.close()
            raise
        self._digest.use_key(key)

    async def add(self, username: str, password_hash: str) -> None:
        """Insert the user; see :meth:`CredentialStore.add`."""

        def insert(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(
                    "INSERT INTO credentials (username, password_hash) VALUES (?, ?)",
                    (username, password_hash),
                )
            except sqlite3.IntegrityError as error:
                raise UserExistsError(username) from error

        await self._database.write(insert)

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace the hash; see :meth:`CredentialStore.set_password_hash`."""
        changed = await self._database.write(
            lambda connection: (
                connection.execute(
                    """
                UPDATE credentials SET password_hash = ?, failed_attempts = 0, window_started = 0
                WHERE username = ?
                """,
                    (password_hash, username),
                ).rowcount
            )
        )
        if changed == 0:
            raise UnknownUserError(username)

    async def remove(self, username: str) -> None:
        """Delete the user; see :meth:`CredentialStore.remove`."""
        removed = await self._database.write(
            lambda connection: (
                connection.execute(
                    "DELETE FROM credentials WHERE username = ?", (username,)
                ).rowcount
            )
        )
        if removed == 0:
            raise UnknownUserError(username)

    async def contains(self, username: str) -> bool:
        """Tell whether the user exists."""
        row = await self._database.read(
            lambda connection: connection.execute(
                "SELECT 1 FROM credentials WHERE username = ?", (username,)
            ).fetchone()
        )
        return row is not None

    async def usernames(self) -> list[str]:
        """Return every username, in code point order."""
        rows = await self._database.read(
            lambda connection: connection.execute(
                "SELECT username FROM credentials ORDER BY username"
            ).fetchall()
        )
        return [username for (username,) in rows]

    async def look_up(self, username: str, *, now: float, policy: LockoutPolicy) -> Attempt:
        """Find the hash and the lock in one read; see :meth:`CredentialStore.look_up`."""
        digest = self._digest(username)
        password_hash, failures, window_started, _ = await self._database.read(
            lambda connection: connection.execute(_COUNTERS, (username, digest)).fetchone()
        )
        return attempt_of(password_hash, failures, window_started, now=now, policy=policy)

    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failure in one transaction; see :meth:`CredentialStore.record_failure`."""
        digest = self._digest(username)

        def count(connection: sqlite3.Connection) -> None:
            password_hash, failures, window_started, existing = connection.execute(
                _COUNTERS, (username, digest)
            ).fetchone()
            counted = policy.count_failure(failures, window_started, now)
            if password_hash is None and not existing:
                _add_unknown_name(connection, digest, counted, now=now, policy=policy)
            elif password_hash is None:
                connection.execute(
                    "UPDATE unknown_name_failures SET failed_attempts = ?, window_started = ?"
                    " WHERE digest = ?",
                    (counted.failures, counted.window_started, digest),
                )
            else:
                connection.execute(
                    "UPDATE credentials SET failed_attempts = ?, window_started = ?"
                    " WHERE username = ?",
                    (counted.failures, counted.window_started, username),
                )

        await self._database.write(count)

    async def record_success(
        self, username: str, *, checked_hash: str, new_hash: str | None
    ) -> None:
        """Clear the failures; see :meth:`CredentialStore.record_success`."""
        if new_hash is None:
            await self._database.write(
                lambda connection: connection.execute(
                    "UPDATE credentials SET failed_attempts = 0, window_started = 0"
                    " WHERE username = ?",
                    (username,),
                )
            )
            return
        await self._database.write(
            lambda connection: connection.execute(
                """
                UPDATE credentials SET
                    failed_attempts = 0,
                    window_started = 0,
                    password_hash = CASE WHEN password_hash = ? THEN ? ELSE password_hash END
                WHERE username = ?
                """,
                (checked_hash, new_hash, username),
            )
        )
