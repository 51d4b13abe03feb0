"""Credentials in a SQLite file, used from one dedicated thread.

Every call runs on the store's own thread, so no call blocks the event loop
and the connection never changes threads. The file is in WAL mode with
``synchronous=FULL`` (a committed failure count survives a power cut) and a
busy timeout, so several processes (``serve --workers N``, the command line)
can share it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

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
from usernames import InvalidUsernameError, canonical_username

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from auth_service.lockout import LockoutPolicy

_T = TypeVar("_T")
_logger = logging.getLogger(__name__)
_WAL_RETRY_SECONDS = 0.05


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
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _create_credentials,
    _add_lockout,
)
SCHEMA_VERSION = len(_MIGRATIONS)


@contextmanager
def _write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """Run the block in a transaction that takes the write lock at once."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


class SqliteCredentialStore(CredentialStore):
    """Credentials in a SQLite file (see the module's description)."""

    def __init__(self, path: Path, *, timeout_seconds: float) -> None:
        """Describe the store; nothing is opened until :meth:`open`.

        Args:
            path: The database file, relative to the working directory or
                absolute. Its folder and the file (readable by its owner only)
                are created if missing.
            timeout_seconds: How long a call waits for another process's write lock.
        """
        self._path = path
        self._timeout_seconds = timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        # Only ever touched on the executor's thread.
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    async def open(self) -> None:
        """Connect on the store's thread, and create or migrate the schema."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auth-service-sqlite")
        try:
            await self._run(self._connect)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection and stop the store's thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            executor.shutdown(wait=True)

    async def ping(self) -> None:
        """Query the schema, and check that the file is still the one opened."""
        await self._run(self._ping)

    async def add(self, username: str, password_hash: str) -> None:
        """Insert the user; see :meth:`CredentialStore.add`."""
        await self._run(self._add, username, password_hash)

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace the hash; see :meth:`CredentialStore.set_password_hash`."""
        await self._run(self._set_password_hash, username, password_hash)

    async def remove(self, username: str) -> None:
        """Delete the user; see :meth:`CredentialStore.remove`."""
        await self._run(self._remove, username)

    async def contains(self, username: str) -> bool:
        """Tell whether the user exists."""
        return await self._run(self._contains, username)

    async def usernames(self) -> list[str]:
        """Return every username, in code point order."""
        return await self._run(self._usernames)

    async def look_up(self, username: str, *, now: float, policy: LockoutPolicy) -> Attempt:
        """Find the hash and the lock; see :meth:`CredentialStore.look_up`."""
        return await self._run(self._look_up, username, now, policy)

    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failure; see :meth:`CredentialStore.record_failure`."""
        await self._run(self._record_failure, username, now, policy)

    async def record_success(
        self, username: str, *, checked_hash: str, new_hash: str | None
    ) -> None:
        """Clear the failures; see :meth:`CredentialStore.record_success`."""
        await self._run(self._record_success, username, checked_hash, new_hash)

    async def _run(self, function: Callable[..., _T], *arguments: object) -> _T:
        if self._executor is None:
            msg = "the credential store is not open"
            raise StoreUnavailableError(msg)
        call = functools.partial(function, *arguments)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (sqlite3.Error, OSError) as error:
            msg = f"SQLite failed: {error}"
            raise StoreUnavailableError(msg) from error

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            msg = "the credential store is not open"
            raise StoreUnavailableError(msg)
        return self._connection

    def _connect(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600))
        # isolation_level=None: the module opens no transactions; ours are explicit.
        connection = sqlite3.connect(
            self._path, timeout=self._timeout_seconds, isolation_level=None
        )
        try:
            self._use_wal(connection)
            connection.execute("PRAGMA synchronous = FULL")
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._identity = _file_identity(self._path)

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment alone with the file, and SQLite does
        # not wait for it on the busy timeout when another process is opening too.
        deadline = time.monotonic() + self._timeout_seconds
        while True:
            try:
                (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_WAL_RETRY_SECONDS)
                continue
            if mode != "wal":
                msg = f"SQLite cannot use WAL mode for this file (it uses {mode})"
                raise StoreUnavailableError(msg)
            return

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> None:
        with _write_transaction(connection):
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                msg = (
                    f"the database schema is at version {version}, newer than this "
                    f"auth-service knows ({SCHEMA_VERSION})"
                )
                raise StoreUnavailableError(msg)
            for migrate in _MIGRATIONS[version:]:
                migrate(connection)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _ping(self) -> None:
        self._db().execute("SELECT attempts FROM unknown_username_attempts").fetchone()
        if _file_identity(self._path) != self._identity:
            msg = "the database file was removed or replaced"
            raise StoreUnavailableError(msg)

    def _add(self, username: str, password_hash: str) -> None:
        try:
            self._db().execute(
                "INSERT INTO credentials (username, password_hash) VALUES (?, ?)",
                (username, password_hash),
            )
        except sqlite3.IntegrityError as error:
            raise UserExistsError(username) from error

    def _set_password_hash(self, username: str, password_hash: str) -> None:
        cursor = self._db().execute(
            """
            UPDATE credentials SET password_hash = ?, failed_attempts = 0, window_started = 0
            WHERE username = ?
            """,
            (password_hash, username),
        )
        if cursor.rowcount == 0:
            raise UnknownUserError(username)

    def _remove(self, username: str) -> None:
        cursor = self._db().execute("DELETE FROM credentials WHERE username = ?", (username,))
        if cursor.rowcount == 0:
            raise UnknownUserError(username)

    def _contains(self, username: str) -> bool:
        row = (
            self._db()
            .execute("SELECT 1 FROM credentials WHERE username = ?", (username,))
            .fetchone()
        )
        return row is not None

    def _usernames(self) -> list[str]:
        rows = self._db().execute("SELECT username FROM credentials ORDER BY username").fetchall()
        return [username for (username,) in rows]

    def _look_up(self, username: str, now: float, policy: LockoutPolicy) -> Attempt:
        row = (
            self._db()
            .execute(
                """
                SELECT password_hash, failed_attempts, window_started FROM credentials
                WHERE username = ?
                """,
                (username,),
            )
            .fetchone()
        )
        if row is None:
            return UnknownUser()
        password_hash, failures, window_started = row
        refusal = policy.refusal(failures, window_started, now)
        if refusal is not None:
            return LockedOut(refusal.retry_after)
        return Admitted(password_hash, failures)

    def _record_failure(self, username: str, now: float, policy: LockoutPolicy) -> None:
        connection = self._db()
        with _write_transaction(connection):
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

    def _record_success(self, username: str, checked_hash: str, new_hash: str | None) -> None:
        if new_hash is None:
            self._db().execute(
                "UPDATE credentials SET failed_attempts = 0, window_started = 0 WHERE username = ?",
                (username,),
            )
            return
        self._db().execute(
            """
            UPDATE credentials SET
                failed_attempts = 0,
                window_started = 0,
                password_hash = CASE WHEN password_hash = ? THEN ? ELSE password_hash END
            WHERE username = ?
            """,
            (checked_hash, new_hash, username),
        )
