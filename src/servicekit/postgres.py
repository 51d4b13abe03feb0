"""PostgreSQL through an asyncpg pool, every wait bounded: the set-up every PostgreSQL store uses.

A :class:`PostgresDatabase` opens a pool in which each wait has a limit of
``timeout_seconds``: connecting, taking a connection from the pool, and each
statement. The server cancels a statement that runs longer, waiting for a
row lock included (``statement_timeout``); the client gives up a little
later on a server that does not answer at all (asyncpg's
``command_timeout``). So a stalled database makes a call fail, never hang.

Every failure of the database (any asyncpg error, a refused or cut
connection, a time limit, a pool that is closing, a call on a closed
database) raises the error the store names, its message free of the URL's
password. The schema's version is kept in a table of the store's naming, and
the migrations a store gives are run at :meth:`PostgresDatabase.open`, one
process at a time.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import asyncpg

from servicekit.stores import refuse_newer_schema

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]

DATABASE_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""What asyncpg raises when the database, or the way to it, fails."""

# How much longer than the server's statement_timeout the client waits for an answer.
_CLIENT_GRACE_SECONDS = 1.0


def quote_identifier(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier, such as a schema name.

    Args:
        name: The identifier, as it is to be stored.

    Returns:
        The identifier in double quotes, any double quote in it doubled.
    """
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class PostgresSchema:
    """A store's tables: who owns them, and how they came to be.

    Attributes:
        owner: The service, such as ``"user-service"``: the name its
            connections carry on the server (``application_name``), and what
            its migrations take their lock on.
        version_table: The table that keeps the schema's version.
        migrations: ``migrations[n]`` are the statements that take the schema
            from version ``n`` to ``n + 1``.
    """

    owner: str
    version_table: str
    migrations: tuple[tuple[str, ...], ...]

    @property
    def version(self) -> int:
        """The version the migrations take the schema to."""
        return len(self.migrations)


def _secrets_of(dsn: str) -> tuple[str, ...]:
    try:
        password = urlsplit(dsn).password
    except ValueError:
        return ()
    if not password:
        return ()
    return tuple({password, unquote(password)})


class PostgresDatabase:
    """A PostgreSQL database behind a bounded asyncpg pool (see the module's description)."""

    def __init__(  # noqa: PLR0913 (each is a distinct knob of the pool)
        self,
        dsn: str,
        tables: PostgresSchema,
        *,
        unavailable: Callable[[str], Exception],
        timeout_seconds: float,
        max_connections: int,
        schema: str | None = None,
    ) -> None:
        """Describe a database; nothing is opened until :meth:`open`.

        Args:
            dsn: A ``postgresql://`` URL, or a libpq connection string.
            tables: The store's tables, created or migrated at :meth:`open`.
            unavailable: Makes the error raised for any failure of the
                database, from a message that says why.
            timeout_seconds: The limit of each wait: connecting, taking a
                connection from the pool, and each statement.
            max_connections: Connections the pool opens at most.
            schema: The schema holding the tables, created if missing; the
                connection's ``search_path`` (default, or from the URL) when omitted.
        """
        self._dsn = dsn
        self._tables = tables
        self._timeout = timeout_seconds
        self._max_connections = max_connections
        self._unavailable = unavailable
        self._schema = schema
        self._secrets = _secrets_of(dsn)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    def __repr__(self) -> str:
        """Name the database by its application, never by its URL, which may hold a password."""
        return f"PostgresDatabase(owner={self._tables.owner!r})"

    async def open(self) -> None:
        """Create the pool, and create or migrate the schema; does nothing if already open."""
        if self._pool is not None:
            return
        statement_timeout_ms = max(1, round(self._timeout * 1000))
        server_settings = {
            "application_name": self._tables.owner,
            "statement_timeout": str(statement_timeout_ms),
        }
        if self._schema is not None:
            server_settings["search_path"] = quote_identifier(self._schema)
        with self._failures():
            pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._max_connections,
                timeout=self._timeout,
                command_timeout=self._timeout + _CLIENT_GRACE_SECONDS,
                server_settings=server_settings,
            )
        try:
            with self._failures():
                async with pool.acquire(timeout=self._timeout) as connection:
                    await self._migrate(connection)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool, once the connections in use are released (within the time limit)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self._timeout + _CLIENT_GRACE_SECONDS)
        except TimeoutError:
            pool.terminate()

    async def ping(self, query: str) -> None:
        """Run ``query``, raising the store's error unless it is answered within the time limit."""
        await self.fetchval(query)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Lend a connection from the pool for the block, waiting for one at most the time limit.

        Database failures in the block raise the store's error; others pass through.
        """
        pool = self._open_pool()
        with self._failures():
            async with pool.acquire(timeout=self._timeout) as connection:
                yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """Lend a connection for the block, in a transaction committed when the block ends.

        An exception leaving the block rolls the transaction back.
        """
        async with self.connection() as connection, connection.transaction():
            yield connection

    async def execute(self, query: str, *arguments: object) -> str:
        """Run one statement on a connection of the pool.

        Returns:
            The statement's status, such as ``"UPDATE 1"``.
        """
        async with self.connection() as connection:
            status: str = await connection.execute(query, *arguments)
        return status

    async def fetch(self, query: str, *arguments: object) -> list[asyncpg.Record]:
        """Run one query on a connection of the pool, and return its rows."""
        async with self.connection() as connection:
            return await connection.fetch(query, *arguments)

    async def fetchrow(self, query: str, *arguments: object) -> asyncpg.Record | None:
        """Run one query on a connection of the pool, and return its first row, if any."""
        async with self.connection() as connection:
            return await connection.fetchrow(query, *arguments)

    async def fetchval(self, query: str, *arguments: object) -> Any:  # noqa: ANN401 (a database value)
        """Run one query on a connection of the pool, and return its first value, if any."""
        async with self.connection() as connection:
            return await connection.fetchval(query, *arguments)

    def _open_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            msg = f"the {self._tables.owner} database is not open"
            raise self._unavailable(msg)
        return self._pool

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except DATABASE_ERRORS as error:
            message = f"PostgreSQL failed: {type(error).__name__}: {error}"
            for secret in self._secrets:
                message = message.replace(secret, "***")
            raise self._unavailable(message) from error

    async def _migrate(self, connection: Connection) -> None:
        tables = self._tables
        table = quote_identifier(tables.version_table)
        async with connection.transaction():
            # Processes starting together would otherwise race on CREATE TABLE.
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1 || coalesce($2, current_schema(), '')))",
                f"{tables.owner}:",
                self._schema,
            )
            if self._schema is not None and not await connection.fetchval(
                "SELECT true FROM pg_namespace WHERE nspname = $1", self._schema
            ):
                await connection.execute(f"CREATE SCHEMA {quote_identifier(self._schema)}")
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (version integer NOT NULL)"
            )
            version = await connection.fetchval(f"SELECT max(version) FROM {table}")  # noqa: S608 (a quoted identifier)
            refuse_newer_schema(version or 0, tables.version, self._unavailable)
            for step in tables.migrations[version or 0 :]:
                for statement in step:
                    await connection.execute(statement)
            await connection.execute(f"DELETE FROM {table}")  # noqa: S608 (a quoted identifier)
            await connection.execute(
                f"INSERT INTO {table} (version) VALUES ($1)",  # noqa: S608 (a quoted identifier)
                tables.version,
            )
