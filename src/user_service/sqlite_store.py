"""Accounts kept in a SQLite file, shared safely by the worker processes of one machine."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

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
    utc_now,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

_T = TypeVar("_T")

# The most creates one transaction commits; the rest wait for the next.
_MAX_BATCH = 256

# SQLite integers are signed 64-bit; larger Python ints cannot even be bound.
_MIN_ID = -(2**63)
_MAX_ID = 2**63 - 1

# _MIGRATIONS[n] takes the schema from version n to n + 1 (kept in PRAGMA user_version).
# Statements are run one by one: executescript() would commit the migration's transaction.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE accounts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE idempotency_keys (
            key TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            account_id INTEGER REFERENCES accounts (id)
        )
        """,
        "CREATE INDEX idempotency_keys_claimed_at ON idempotency_keys (claimed_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT_ACCOUNT = """
    INSERT INTO accounts (username, created_at) VALUES (?, ?)
    ON CONFLICT (username) DO NOTHING
    RETURNING id
"""
_COMPLETE_KEY = """
    INSERT INTO idempotency_keys (key, fingerprint, claimed_at, account_id) VALUES (?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        claimed_at = excluded.claimed_at,
        account_id = excluded.account_id
"""
_HELD_KEY = """
    SELECT k.fingerprint, k.claimed_at, a.id, a.username, a.created_at
    FROM idempotency_keys AS k LEFT JOIN accounts AS a ON a.id = k.account_id
    WHERE k.key = ?
"""
_TAKE_KEY = """
    INSERT INTO idempotency_keys (key, fingerprint, claimed_at) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        claimed_at = excluded.claimed_at,
        account_id = NULL
"""


def _to_text(moment: datetime) -> str:
    # Fixed width and always UTC, so that text order is time order (claimed_at is compared in SQL).
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


@contextmanager
def _write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """Run the block in a transaction that holds the database's write lock from its start."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _connect(path: Path, busy_timeout: float, *, writer: bool) -> sqlite3.Connection:
    if writer:
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module opens no transactions of its own; ours are explicit.
    connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        _configure(connection, writer=writer)
        if writer:
            _use_wal(connection, deadline=time.monotonic() + busy_timeout)
    except BaseException:
        connection.close()
        raise
    return connection


def _configure(connection: sqlite3.Connection, *, writer: bool) -> None:
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA synchronous = FULL")
    if not writer:
        connection.execute("PRAGMA query_only = ON")


def _use_wal(connection: sqlite3.Connection, *, deadline: float) -> None:
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            break
        except sqlite3.OperationalError as error:
            # When processes switch a new file to WAL together, SQLite answers BUSY at
            # once to all but one (rather than wait and deadlock): retry until the deadline.
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode != "wal":
        msg = f"SQLite refused WAL mode (journal mode is {mode!r})"
        raise sqlite3.OperationalError(msg)


def _migrate(connection: sqlite3.Connection) -> None:
    with _write_transaction(connection):
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            msg = f"the database has schema version {version}; this code knows {SCHEMA_VERSION}"
            raise RuntimeError(msg)
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


@dataclass(frozen=True, slots=True)
class _PendingCreate:
    username: str
    idempotency: IdempotencyClaim | None
    result: Future[UserAccount] = field(default_factory=Future)


def _insert_accounts(
    connection: sqlite3.Connection, batch: list[_PendingCreate]
) -> list[UserAccount | UsernameTakenError]:
    outcomes: list[UserAccount | UsernameTakenError] = []
    with _write_transaction(connection):
        # Stamped under the write lock, so that later ids never have earlier times.
        created_at = utc_now()
        for pending in batch:
            row = connection.execute(
                _INSERT_ACCOUNT, (pending.username, _to_text(created_at))
            ).fetchone()
            if row is None:
                outcomes.append(UsernameTakenError(pending.username))
                continue
            if (claim := pending.idempotency) is not None:
                connection.execute(
                    _COMPLETE_KEY, (claim.key, claim.fingerprint, _to_text(created_at), row["id"])
                )
            outcomes.append(UserAccount(row["id"], pending.username, created_at))
    return outcomes


class _ConnectionThread:
    """One sqlite3 connection, used only from its own worker thread."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._connection: sqlite3.Connection | None = None

    async def start(self, connect: Callable[[], sqlite3.Connection]) -> None:
        def open_connection() -> None:
            self._connection = connect()

        await asyncio.get_running_loop().run_in_executor(self._executor, open_connection)

    async def call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        def run() -> _T:
            if self._connection is None:
                msg = "the SQLite connection is closed"
                raise sqlite3.ProgrammingError(msg)
            return work(self._connection)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def stop(self) -> None:
        def close_connection() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, close_connection)
        finally:
            # Calls queued before close_connection have run, so the idle thread ends at once.
            self._executor.shutdown(wait=False)


class SqliteAccountStore:
    """Accounts in a SQLite file, in WAL mode, for one or several processes of one machine.

    Every database call runs in a worker thread: writes in one dedicated writer
    thread, so they are serialised within the process, and reads in a reader
    thread. Across processes, writes take the file's write lock at the start
    of their transaction (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout``
    for it. Commits are flushed to disk (``synchronous=FULL``) before they are
    acknowledged.
    """

    def __init__(
        self,
        path: Path,
        *,
        policy: IdempotencyPolicy | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        """Describe a store; nothing is opened until :meth:`open`.

        Args:
            path: The database file; a relative path is relative to the working
                directory at :meth:`open`. Its folder is created if missing.
            policy: How long idempotency keys live.
            busy_timeout: Seconds to wait for another process's write lock.
        """
        self._path = path
        self._policy = policy or IdempotencyPolicy()
        self._busy_timeout = busy_timeout
        self._writer: _ConnectionThread | None = None
        self._reader: _ConnectionThread | None = None
        self._pending: queue.SimpleQueue[_PendingCreate] = queue.SimpleQueue()

    async def open(self) -> None:
        """Connect, and create or migrate the schema; does nothing if already open."""
        if self._writer is not None:
            return
        path = self._path.absolute()
        writer = _ConnectionThread("sqlite-account-writer")
        reader = _ConnectionThread("sqlite-account-reader")
        try:
            await writer.start(lambda: _connect(path, self._busy_timeout, writer=True))
            await writer.call(_migrate)
            await reader.start(lambda: _connect(path, self._busy_timeout, writer=False))
        except BaseException:
            await reader.stop()
            await writer.stop()
            raise
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Close both connections, once the calls already queued have run."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None:
            await reader.stop()
        if writer is not None:
            await writer.stop()

    async def ping(self) -> None:
        """Raise if the store is closed or its tables cannot be read."""
        await self._read(lambda connection: connection.execute("SELECT 1 FROM accounts LIMIT 1"))

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
        writer = self._require(self._writer)
        pending = _PendingCreate(username, idempotency)
        self._pending.put(pending)
        await self._call(writer, self._commit_pending)
        return await asyncio.wrap_future(pending.result)

    def _commit_pending(self, connection: sqlite3.Connection) -> None:
        """Commit every create queued so far in one transaction: one fsync for the batch.

        Runs on the writer thread. Creates queue up while a commit is on disk,
        so under load each commit carries many; alone, a create is its own
        batch. Each caller gets its answer only after the commit.
        """
        batch: list[_PendingCreate] = []
        while len(batch) < _MAX_BATCH:
            try:
                batch.append(self._pending.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        try:
            outcomes = _insert_accounts(connection, batch)
        except sqlite3.OperationalError as error:
            failure = AccountStoreUnavailableError(f"the account database is unavailable: {error}")
            for pending in batch:
                pending.result.set_exception(failure)
            return
        except BaseException as error:
            for pending in batch:
                pending.result.set_exception(error)
            raise
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, UserAccount):
                pending.result.set_result(outcome)
            else:
                pending.result.set_exception(outcome)

    async def get(self, account_id: int) -> UserAccount | None:
        """Return the account with ``account_id``, or ``None``."""
        if not _MIN_ID <= account_id <= _MAX_ID:
            return None

        def select(connection: sqlite3.Connection) -> UserAccount | None:
            row = connection.execute(
                "SELECT id, username, created_at FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            if row is None:
                return None
            return UserAccount(row["id"], row["username"], _from_text(row["created_at"]))

        return await self._read(select)

    async def claim(self, claim: IdempotencyClaim) -> ClaimOutcome:
        """Claim an idempotency key for a request about to run.

        Expired keys are purged first, in the same write transaction.
        """
        policy = self._policy

        def take(connection: sqlite3.Connection) -> ClaimOutcome:
            with _write_transaction(connection):
                now = utc_now()  # read under the write lock, which may have been waited for
                connection.execute(
                    "DELETE FROM idempotency_keys WHERE claimed_at <= ?",
                    (_to_text(now - policy.ttl),),
                )
                held = connection.execute(_HELD_KEY, (claim.key,)).fetchone()
                if held is None or (
                    held["id"] is None and _from_text(held["claimed_at"]) <= now - policy.lease
                ):
                    connection.execute(_TAKE_KEY, (claim.key, claim.fingerprint, _to_text(now)))
                    return Claimed()
            if held["fingerprint"] != claim.fingerprint:
                return Mismatch()
            if held["id"] is None:
                return InFlight()
            return Completed(
                UserAccount(held["id"], held["username"], _from_text(held["created_at"]))
            )

        return await self._write(take)

    async def release(self, claim: IdempotencyClaim) -> None:
        """Give up an unfinished claim, so that a retry runs afresh."""
        await self._write(
            lambda connection: connection.execute(
                "DELETE FROM idempotency_keys"
                " WHERE key = ? AND fingerprint = ? AND account_id IS NULL",
                (claim.key, claim.fingerprint),
            )
        )

    async def reset(self) -> None:
        """Remove every account and key, and start ids at 1 again."""

        def empty(connection: sqlite3.Connection) -> None:
            with _write_transaction(connection):
                connection.execute("DELETE FROM idempotency_keys")
                connection.execute("DELETE FROM accounts")
                connection.execute("DELETE FROM sqlite_sequence WHERE name = 'accounts'")

        await self._write(empty)

    async def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._call(self._writer, work)

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._call(self._reader, work)

    async def _call(
        self, thread: _ConnectionThread | None, work: Callable[[sqlite3.Connection], _T]
    ) -> _T:
        try:
            return await self._require(thread).call(work)
        except sqlite3.OperationalError as error:
            msg = f"the account database is unavailable: {error}"
            raise AccountStoreUnavailableError(msg) from error

    def _require(self, thread: _ConnectionThread | None) -> _ConnectionThread:
        if thread is None:
            msg = f"the account store at {self._path} is not open"
            raise RuntimeError(msg)
        return thread
