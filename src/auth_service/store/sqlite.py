"""Credentials in a SQLite file, through :class:`servicekit.sqlite.SqliteDatabase`.

Reads and writes run on threads of their own, so no call blocks the event
loop. The file is in WAL mode with ``synchronous=FULL`` (a committed failure
count survives a power cut), and every write is a transaction that takes the
write lock at its start, waiting up to the timeout for another process's, so
several processes (``serve --workers N``, the command line) can share it.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

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
from servicekit.sqlite import SqliteDatabase
from servicekit.stores import DatabaseBacked
from usernames import InvalidUsernameError, canonical_username

if TYPE_CHECKING:
    from pathlib import Path

    from auth_service.lockout import LockoutPolicy

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


# _MIGRATIONS[n] takes the schema from version n to n + 1 (kept in PRAGMA user_version).
_MIGRATIONS = (_create_credentials, _add_lockout)
SCHEMA_VERSION = len(_MIGRATIONS)


class SqliteCredentialStore(DatabaseBacked[SqliteDatabase], CredentialStore):
    """Credentials in a SQLite file (see the module's description)."""

    PING_QUERY = "SELECT attempts FROM unknown_username_attempts"

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
        """Find the hash and the lock; see :meth:`CredentialStore.look_up`."""
        row = await self._database.read(
            lambda connection: connection.execute(
                """
                SELECT password_hash, failed_attempts, window_started FROM credentials
                WHERE username = ?
                """,
                (username,),
            ).fetchone()
        )
        if row is None:
            return UnknownUser()
        password_hash, failures, window_started = row
        refusal = policy.refusal(failures, window_started, now)
        if refusal is not None:
            return LockedOut(refusal.retry_after)
        return Admitted(password_hash, failures)

    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failure; see :meth:`CredentialStore.record_failure`."""

        def count(connection: sqlite3.Connection) -> None:
            row = connection.execute(
                "SELECT failed_attempts, window_started FROM credentials WHERE username = ?",
                (username,),
            ).fetchone()
            if row is None:
                connection.execute(
                    "UPDATE unknown_username_attempts SET attempts = attempts + 1 WHERE id = 1"
                )
                return
            failures, window_started = row
            counted = policy.count_failure(failures, window_started, now)
            connection.execute(
                "UPDATE credentials SET failed_attempts = ?, window_started = ? WHERE username = ?",
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
