"""Accounts kept in a SQLite file, shared safely by the worker processes of one machine."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

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
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

_T = TypeVar("_T")


class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)

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

_INSERT_ACCOUNTS = """
    INSERT INTO accounts (username, created_at) VALUES {rows}
    ON CONFLICT (username) DO NOTHING
    RETURNING id, username
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


class _WriterLock:
    """An exclusive lock on a file beside the database, held by a process around each write.

    Without it, a process waiting for SQLite's write lock polls, sleeping 1, 2,
    5, 10 ms and longer between tries, so that with several worker processes
    the sleeps, not the writes, set the latency. This lock is polled from
    0.1 ms up, so a waiting writer starts soon after the lock is free. Any
    writer that does not take it (another program) still meets SQLite's lock.
    """

    _FIRST_POLL = 0.0001
    _LONGEST_POLL = 0.002

    def __init__(self, path: Path, timeout: float) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._timeout = timeout

    def close(self) -> None:
        os.close(self._fd)

    @contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + self._timeout
        pause = self._FIRST_POLL
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    msg = f"database is locked: another process wrote for over {self._timeout} s"
                    raise sqlite3.OperationalError(msg) from None
                time.sleep(pause)
                pause = min(pause * 2, self._LONGEST_POLL)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


@dataclass(slots=True)
class _Writer:
    """The writing connection, and the lock its process takes around each write transaction."""

    connection: sqlite3.Connection
    lock: _WriterLock

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in a transaction that holds the database's write lock from its start."""
        connection = self.connection
        with self.lock.held():
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        try:
            self.connection.close()
        finally:
            self.lock.close()


def _connect(path: Path, busy_timeout: float, *, writer: bool) -> sqlite3.Connection:
    # isolation_level=None: the module opens no transactions of its own; ours are explicit.
    connection = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,
        # The writer prepares an insert for each batch size up to _MAX_BATCH.
        cached_statements=_MAX_BATCH + 64,
    )
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


def _connect_writer(path: Path, busy_timeout: float) -> _Writer:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _WriterLock(path.with_name(f"{path.name}-writer.lock"), busy_timeout)
    try:
        return _Writer(_connect(path, busy_timeout, writer=True), lock)
    except BaseException:
        lock.close()
        raise


def _migrate(writer: _Writer) -> None:
    with writer.transaction() as connection:
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
    result: asyncio.Future[UserAccount]


def _insert_accounts(
    writer: _Writer, *, batch: list[_PendingCreate]
) -> list[UserAccount | UsernameTakenError]:
    """Insert a batch of accounts with one statement, in one transaction.

    One statement rather than one a row: this runs on the writer thread, which
    must win the GIL back from the event loop after each call into SQLite.
    """
    with writer.transaction() as connection:
        # Stamped under the write lock, so that later ids never have earlier times.
        created_at = utc_now()
        stamp = _to_text(created_at)
        inserted = connection.execute(
            _INSERT_ACCOUNTS.format(rows=", ".join(["(?, ?)"] * len(batch))),
            [value for pending in batch for value in (pending.username, stamp)],
        ).fetchall()
        # RETURNING gives no order; a username twice in a batch is inserted once.
        new_ids = {row["username"]: row["id"] for row in inserted}
        outcomes: list[UserAccount | UsernameTakenError] = []
        completed_keys = []
        for pending in batch:
            account_id = new_ids.pop(pending.username, None)
            if account_id is None:
                outcomes.append(UsernameTakenError(pending.username))
                continue
            outcomes.append(UserAccount(account_id, pending.username, created_at))
            if (claim := pending.idempotency) is not None:
                completed_keys.append((claim.key, claim.fingerprint, stamp, account_id))
        if completed_keys:
            connection.executemany(_COMPLETE_KEY, completed_keys)
    return outcomes


class _ConnectionThread(Generic[_C]):
    """One connection, used only from its own worker thread."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._connection: _C | None = None

    async def start(self, connect: Callable[[], _C]) -> None:
        def open_connection() -> None:
            self._connection = connect()

        await asyncio.get_running_loop().run_in_executor(self._executor, open_connection)

    async def call(self, work: Callable[[_C], _T]) -> _T:
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
    thread. Across processes, a write transaction takes a lock on the file
    ``<database>-writer.lock`` beside the database, then SQLite's write lock
    (``BEGIN IMMEDIATE``), waiting up to ``busy_timeout`` for each. Commits
    are flushed to disk (``synchronous=FULL``) before they are acknowledged.
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
        self._writer: _ConnectionThread[_Writer] | None = None
        self._reader: _ConnectionThread[sqlite3.Connection] | None = None
        self._pending: list[_PendingCreate] = []
        self._committer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect, and create or migrate the schema; does nothing if already open."""
        if self._writer is not None:
            return
        path = self._path.absolute()
        writer: _ConnectionThread[_Writer] = _ConnectionThread("sqlite-account-writer")
        reader: _ConnectionThread[sqlite3.Connection] = _ConnectionThread("sqlite-account-reader")
        try:
            await writer.start(lambda: _connect_writer(path, self._busy_timeout))
            await writer.call(_migrate)
            await reader.start(lambda: _connect(path, self._busy_timeout, writer=False))
        except BaseException:
            await reader.stop()
            await writer.stop()
            raise
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Close both connections, once the creates and calls already queued have run."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if self._committer is not None:
            await asyncio.wait([self._committer])
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
        pending = _PendingCreate(username, idempotency, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_pending(writer))
        return await pending.result

    async def _commit_pending(self, writer: _ConnectionThread[_Writer]) -> None:
        """Commit the queued creates in batches: one transaction, and one fsync, a batch.

        Creates queue up while a batch is being committed, so under load each
        commit carries many; alone, a create is its own batch. Each caller
        gets its answer once its batch is on disk.
        """
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                try:
                    outcomes: Sequence[UserAccount | Exception] = await self._call(
                        writer, partial(_insert_accounts, batch=batch)
                    )
                except Exception as error:  # noqa: BLE001 (the callers get it)
                    outcomes = [error] * len(batch)
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.result.done():
                        continue  # its caller gave up; the account may still have been stored
                    if isinstance(outcome, Exception):
                        pending.result.set_exception(outcome)
                    else:
                        pending.result.set_result(outcome)
        finally:
            self._committer = None
            while self._pending:
                self._pending.pop().result.cancel()

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

        def take(writer: _Writer) -> ClaimOutcome:
            with writer.transaction() as connection:
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

        def forget(writer: _Writer) -> None:
            with writer.transaction() as connection:
                connection.execute(
                    "DELETE FROM idempotency_keys"
                    " WHERE key = ? AND fingerprint = ? AND account_id IS NULL",
                    (claim.key, claim.fingerprint),
                )

        await self._write(forget)

    async def reset(self) -> None:
        """Remove every account and key, and start ids at 1 again."""

        def empty(writer: _Writer) -> None:
            with writer.transaction() as connection:
                connection.execute("DELETE FROM idempotency_keys")
                connection.execute("DELETE FROM accounts")
                connection.execute("DELETE FROM sqlite_sequence WHERE name = 'accounts'")

        await self._write(empty)

    async def _write(self, work: Callable[[_Writer], _T]) -> _T:
        return await self._call(self._writer, work)

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._call(self._reader, work)

    async def _call(self, thread: _ConnectionThread[_C] | None, work: Callable[[_C], _T]) -> _T:
        try:
            return await self._require(thread).call(work)
        except sqlite3.OperationalError as error:
            msg = f"the account database is unavailable: {error}"
            raise AccountStoreUnavailableError(msg) from error

    def _require(self, thread: _ConnectionThread[_C] | None) -> _ConnectionThread[_C]:
        if thread is None:
            msg = f"the account store at {self._path} is not open"
            raise RuntimeError(msg)
        return thread
