"""A SQLite file shared by the processes of one machine: the plumbing every SQLite store runs on.

A :class:`SqliteDatabase` keeps two connections to its file, each used only
from a thread of its own, so that no call blocks the event loop and no
connection changes threads: a writer, whose every call is one transaction
holding SQLite's write lock from its start (``BEGIN IMMEDIATE``), and a
reader (``query_only``). The file is in WAL mode, so reads never wait for
writes, with ``synchronous=FULL``, so a commit is on disk before it is
acknowledged. Its schema version is kept in ``PRAGMA user_version`` and the
migrations a store gives are run at :meth:`SqliteDatabase.open`.

Across processes, each write transaction first takes an exclusive lock on the
file ``<database>-writer.lock`` beside the database, then SQLite's write
lock, waiting up to the timeout for each. Without that lock, a process
waiting for SQLite's write lock polls, sleeping 1, 2, 5, 10 ms and longer
between tries, so that with several worker processes the sleeps, not the
writes, set the latency; this lock is polled from 0.1 ms up. Any writer that
does not take it (another program) still meets SQLite's lock.

Every failure of the database, whatever its kind (a lock held too long, a
corrupt file, a full disk, a folder that cannot be made), and a call on a
closed database, raise the error the store names, with the reason.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Generic, Protocol, TypeAlias, TypeVar

from servicekit.stores import refuse_newer_schema

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

_T = TypeVar("_T")

Migration: TypeAlias = Callable[[sqlite3.Connection], None]
"""Takes a schema from one version to the next, inside the migration's transaction."""

_FIRST_POLL = 0.0001
_LONGEST_POLL = 0.002
_WAL_RETRY_SECONDS = 0.01


def statements(*sql: str) -> Migration:
    """Return a migration that runs ``sql``, statement by statement.

    (``executescript()`` would commit the migration's transaction.)
    """

    def run(connection: sqlite3.Connection) -> None:
        for statement in sql:
            connection.execute(statement)

    return run


class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)


class _WriterLock:
    """An exclusive lock on a file beside the database, held around each write transaction."""

    def __init__(self, path: Path, timeout: float) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._timeout = timeout

    def close(self) -> None:
        os.close(self._fd)

    @contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + self._timeout
        pause = _FIRST_POLL
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    msg = f"database is locked: another process wrote for over {self._timeout} s"
                    raise sqlite3.OperationalError(msg) from None
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_POLL)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class _Writer:
    """The writing connection, and the lock its process takes around each write transaction."""

    def __init__(self, connection: sqlite3.Connection, lock: _WriterLock) -> None:
        self.connection = connection
        self.lock = lock

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


def _connect(
    path: Path, *, timeout: float, statement_cache: int, writer: bool
) -> sqlite3.Connection:
    # isolation_level=None: the module opens no transactions of its own; ours are explicit.
    connection = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, cached_statements=statement_cache
    )
    try:
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA synchronous = FULL")
        if writer:
            _use_wal(connection, deadline=time.monotonic() + timeout)
        else:
            connection.execute("PRAGMA query_only = ON")
    except BaseException:
        connection.close()
        raise
    return connection


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
            time.sleep(_WAL_RETRY_SECONDS)
    if mode != "wal":
        msg = f"SQLite refused WAL mode (journal mode is {mode!r})"
        raise sqlite3.OperationalError(msg)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


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


class SqliteDatabase:
    """A SQLite file with a writer and a reader thread (see the module's description)."""

    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[Migration],
        timeout_seconds: float,
        unavailable: Callable[[str], Exception],
        statement_cache: int = 128,
    ) -> None:
        """Describe a database; nothing is opened until :meth:`open`.

        Args:
            path: The database file; a relative path is relative to the working
                directory at :meth:`open`. Its folder, and the file (readable by
                its owner only), are created if missing.
            migrations: ``migrations[n]`` takes the schema from version ``n`` to
                ``n + 1``; the database is at version ``len(migrations)`` once open.
            timeout_seconds: How long a call waits for another process's write lock.
            unavailable: Makes the error raised for any failure of the
                database, from a message that says why.
            statement_cache: Prepared statements each connection keeps.
        """
        self._path = path
        self._migrations = tuple(migrations)
        self._timeout = timeout_seconds
        self._unavailable = unavailable
        self._statement_cache = statement_cache
        self._writer: _ConnectionThread[_Writer] | None = None
        self._reader: _ConnectionThread[sqlite3.Connection] | None = None
        self._identity: tuple[int, int] | None = None

    @property
    def schema_version(self) -> int:
        """The version the migrations take the schema to."""
        return len(self._migrations)

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` has succeeded and :meth:`close` has not been called since."""
        return self._writer is not None

    async def open(self) -> None:
        """Connect, and create or migrate the schema; does nothing if already open."""
        if self._writer is not None:
            return
        path = self._path.absolute()
        writer: _ConnectionThread[_Writer] = _ConnectionThread(f"sqlite-{path.name}-writer")
        reader: _ConnectionThread[sqlite3.Connection] = _ConnectionThread(
            f"sqlite-{path.name}-reader"
        )
        try:
            with self._failures():
                await writer.start(lambda: self._connect_writer(path))
                await writer.call(self._migrate)
                await reader.start(
                    lambda: _connect(
                        path,
                        timeout=self._timeout,
                        statement_cache=self._statement_cache,
                        writer=False,
                    )
                )
                identity = await reader.call(lambda _: _file_identity(path))
        except BaseException:
            await reader.stop()
            await writer.stop()
            raise
        self._writer, self._reader, self._identity = writer, reader, identity

    async def close(self) -> None:
        """Close both connections, once the calls already queued have run."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None:
            await reader.stop()
        if writer is not None:
            await writer.stop()

    async def read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the reading connection, on its thread.

        Returns:
            What ``work`` returns.
        """
        return await self._call(self._reader, work)

    async def write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one write transaction, on the writer's thread.

        The transaction commits when ``work`` returns, and rolls back when it raises.

        Returns:
            What ``work`` returns.
        """

        def in_transaction(writer: _Writer) -> _T:
            with writer.transaction() as connection:
                return work(connection)

        return await self._call(self._writer, in_transaction)

    async def ping(self, query: str) -> None:
        """Run ``query`` on the reader, and check that the file is still the one opened."""
        path = self._path.absolute()

        def check(connection: sqlite3.Connection) -> None:
            connection.execute(query).fetchall()
            if _file_identity(path) != self._identity:
                msg = "the database file was removed or replaced"
                raise sqlite3.OperationalError(msg)

        await self.read(check)

    async def _call(self, thread: _ConnectionThread[_C] | None, work: Callable[[_C], _T]) -> _T:
        if thread is None:
            msg = f"the database {self._path} is not open"
            raise self._unavailable(msg)
        with self._failures():
            return await thread.call(work)

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as error:
            msg = f"SQLite failed: {error}"
            raise self._unavailable(msg) from error

    def _connect_writer(self, path: Path) -> _Writer:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
        lock = _WriterLock(path.with_name(f"{path.name}-writer.lock"), self._timeout)
        try:
            connection = _connect(
                path, timeout=self._timeout, statement_cache=self._statement_cache, writer=True
            )
        except BaseException:
            lock.close()
            raise
        return _Writer(connection, lock)

    def _migrate(self, writer: _Writer) -> None:
        with writer.transaction() as connection:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            refuse_newer_schema(version, self.schema_version, self._unavailable)
            for migrate in self._migrations[version:]:
                migrate(connection)
            connection.execute(f"PRAGMA user_version = {self.schema_version:d}")
