"""Client tokens: which callers a service answers, kept as digests in the service's own database.

A service that other services call (auth-service for user-service,
user-service for frontend-web) answers only the clients registered with it.
Each client holds one or two bearer tokens (two while one is rotated), made
by :meth:`ClientRegistry.issue` and shown once; the service keeps only their
SHA-256 digests, so a copy of its database lets no one call it. A token is
256 random bits, so a plain digest is as strong as a keyed or slow one. A
token is looked up by its digest, which a caller cannot steer towards a
stored one, and the digest found is compared in constant time.

:class:`RequireClientToken` checks the ``Authorization: Bearer`` header of
every request but a few open paths, before the body is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servicekit.middleware import add_log_fields, json_answer

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Collection

    from starlette.types import ASGIApp, Receive, Scope, Send

    from servicekit.postgres import PostgresDatabase
    from servicekit.sqlite import Migration, SqliteDatabase

TOKEN_BYTES = 32
"""Random bytes in a token: 256 bits."""

MAX_TOKENS_PER_CLIENT = 2
"""Tokens a client may hold at once: the current one and its replacement."""

_MIN_TOKEN_LENGTH = 43
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{_MIN_TOKEN_LENGTH},}}")
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ClientTokenError(Exception):
    """A change to the registered clients that cannot be made; the message says why."""


class InvalidClientNameError(ClientTokenError):
    """The name is not a client name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""

    def __init__(self, name: str) -> None:
        """Describe the refused ``name``."""
        super().__init__(
            f"{name!r} is not a client name: 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or a digit"
        )


class TooManyTokensError(ClientTokenError):
    """The client already holds :data:`MAX_TOKENS_PER_CLIENT` tokens."""

    def __init__(self, client: str) -> None:
        """Describe the refusal for ``client``."""
        super().__init__(
            f"client {client!r} already holds {MAX_TOKENS_PER_CLIENT} tokens;"
            f" remove the older one first (clients remove {client} --oldest)"
        )


class UnknownClientError(ClientTokenError):
    """No client has the name."""

    def __init__(self, client: str) -> None:
        """Describe the missing ``client``."""
        super().__init__(f"no client is named {client!r}")


def new_token() -> str:
    """Return a new token: :data:`TOKEN_BYTES` random bytes, URL-safe base64."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """Return what a service keeps of ``token``: its SHA-256 digest, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def client_name(name: str) -> str:
    """Return ``name`` if it is a valid client name.

    Raises:
        InvalidClientNameError: If it is not.
    """
    if not _CLIENT_NAME.fullmatch(name):
        raise InvalidClientNameError(name)
    return name


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token a client holds, as far as the service knows it (never the token itself).

    Attributes:
        client: The client's name.
        created: When the token was made, in seconds since the epoch.
    """

    client: str
    created: float


class ClientRegistry(ABC):
    """The clients a service answers, and the digests of their tokens.

    Attributes:
        changes: How many times tokens were added or revoked through this
            object, so that what remembers its answers in this process can
            forget them at once.
    """

    changes: int = 0

    @abstractmethod
    async def client_of(self, digest: str) -> str | None:
        """Return the client holding the token of ``digest``, or ``None`` if none does."""

    @abstractmethod
    async def _insert(self, client: str, digest: str, created: float) -> None:
        """Keep ``digest`` for ``client``, unless it holds the most tokens already.

        Raises:
            TooManyTokensError: If it does.
        """

    @abstractmethod
    async def revoke(self, client: str, *, oldest_only: bool = False) -> int:
        """Forget every token of ``client``, or only its oldest one.

        Returns:
            How many tokens were forgotten.

        Raises:
            UnknownClientError: If the client holds no token.
        """

    @abstractmethod
    async def tokens(self) -> list[IssuedToken]:
        """Return every token held, by client name and then oldest first."""

    async def issue(self, client: str, *, now: float | None = None) -> str:
        """Make a new token for ``client`` (registering the client if it is new).

        Args:
            client: The client's name.
            now: When it is made, in seconds since the epoch; the current time if omitted.

        Returns:
            The token: shown once, never kept.

        Raises:
            InvalidClientNameError: If ``client`` is not a client name.
            TooManyTokensError: If the client holds the most tokens already.
        """
        return await self.register(client, new_token(), now=now)

    async def register(self, client: str, token: str, *, now: float | None = None) -> str:
        """Let ``client`` call with ``token``, made elsewhere (by :func:`new_token`, or a vault).

        Args:
            client: The client's name.
            token: At least 43 URL-safe characters (256 bits in base64).
            now: When it is made, in seconds since the epoch; the current time if omitted.

        Returns:
            The token.

        Raises:
            InvalidClientNameError: If ``client`` is not a client name.
            ValueError: If ``token`` is too short or holds other characters.
            TooManyTokensError: If the client holds the most tokens already.
        """
        if not _TOKEN.fullmatch(token):
            msg = f"a token has at least {_MIN_TOKEN_LENGTH} URL-safe characters"
            raise ValueError(msg)
        await self._insert(
            client_name(client), token_digest(token), time.time() if now is None else now
        )
        self.changes += 1
        return token


class InMemoryClientRegistry(ClientRegistry):
    """Clients kept in memory, for a service whose data lives in memory."""

    def __init__(self) -> None:
        """Start with no client."""
        self._holders: dict[str, IssuedToken] = {}

    async def client_of(self, digest: str) -> str | None:
        """See :meth:`ClientRegistry.client_of`."""
        held = self._holders.get(digest)
        return _holder(digest, None if held is None else (digest, held.client))

    async def _insert(self, client: str, digest: str, created: float) -> None:
        if sum(held.client == client for held in self._holders.values()) >= MAX_TOKENS_PER_CLIENT:
            raise TooManyTokensError(client)
        self._holders[digest] = IssuedToken(client, created)

    async def revoke(self, client: str, *, oldest_only: bool = False) -> int:
        """See :meth:`ClientRegistry.revoke`."""
        held = sorted(
            (
                (token.created, digest)
                for digest, token in self._holders.items()
                if token.client == client
            )
        )
        if not held:
            raise UnknownClientError(client)
        for _, digest in held[:1] if oldest_only else held:
            del self._holders[digest]
        self.changes += 1
        return 1 if oldest_only else len(held)

    async def tokens(self) -> list[IssuedToken]:
        """See :meth:`ClientRegistry.tokens`."""
        return sorted(self._holders.values(), key=lambda token: (token.client, token.created))


def _holder(digest: str, found: tuple[str, str] | None) -> str | None:
    """Return the client of the ``(digest, client)`` found, if its digest is ``digest``."""
    if found is None or not hmac.compare_digest(found[0], digest):
        return None
    return found[1]


def _table(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name):
        msg = f"{name!r} is not a table name"
        raise ValueError(msg)
    return name


def _revoking(table: str, *, oldest_only: bool) -> str:
    """Return the statement deleting the tokens of the client ``$1``, or its oldest one."""
    if oldest_only:
        return (
            f"DELETE FROM {table} WHERE digest = (SELECT digest FROM {table}"  # noqa: S608
            " WHERE client = $1 ORDER BY created LIMIT 1)"
        )
    return f"DELETE FROM {table} WHERE client = $1"  # noqa: S608 (a checked name)


def _create_table(table: str) -> str:
    return f"""
        CREATE TABLE {_table(table)} (
            digest TEXT PRIMARY KEY,
            client TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL
        )
        """


def sqlite_migration(table: str) -> Migration:
    """Return the SQLite migration that makes the table of client tokens ``table``."""

    def create(connection: sqlite3.Connection) -> None:
        connection.execute(_create_table(table))
        connection.execute(f"CREATE INDEX {table}_by_client ON {table} (client, created)")

    return create


def postgres_migration(table: str) -> tuple[str, ...]:
    """Return the PostgreSQL statements that make the table of client tokens ``table``."""
    return (
        _create_table(table),
        f"CREATE INDEX {table}_by_client ON {_table(table)} (client, created)",
    )


class SqliteClientRegistry(ClientRegistry):
    """Clients in a table of a service's SQLite database (made by :func:`sqlite_migration`)."""

    def __init__(self, database: SqliteDatabase, *, table: str) -> None:
        """Use ``table`` of ``database``; the service opens and closes the database."""
        self._database = database
        self._table = _table(table)

    async def client_of(self, digest: str) -> str | None:
        """See :meth:`ClientRegistry.client_of`."""
        query = f"SELECT digest, client FROM {self._table} WHERE digest = ?"  # noqa: S608

        def find(connection: sqlite3.Connection) -> tuple[str, str] | None:
            row = connection.execute(query, (digest,)).fetchone()
            return None if row is None else (row[0], row[1])

        return _holder(digest, await self._database.read(find))

    async def _insert(self, client: str, digest: str, created: float) -> None:
        table = self._table

        def insert(connection: sqlite3.Connection) -> None:
            (held,) = connection.execute(
                f"SELECT count(*) FROM {table} WHERE client = ?",  # noqa: S608 (a checked name)
                (client,),
            ).fetchone()
            if held >= MAX_TOKENS_PER_CLIENT:
                raise TooManyTokensError(client)
            connection.execute(
                f"INSERT INTO {table} (digest, client, created) VALUES (?, ?, ?)",  # noqa: S608
                (digest, client, created),
            )

        await self._database.write(insert)

    async def revoke(self, client: str, *, oldest_only: bool = False) -> int:
        """See :meth:`ClientRegistry.revoke`."""
        query = _revoking(self._table, oldest_only=oldest_only).replace("$1", "?")

        def delete(connection: sqlite3.Connection) -> int:
            removed = connection.execute(query, (client,)).rowcount
            if not removed:
                raise UnknownClientError(client)
            return removed

        removed = await self._database.write(delete)
        self.changes += 1
        return removed

    async def tokens(self) -> list[IssuedToken]:
        """See :meth:`ClientRegistry.tokens`."""
        query = f"SELECT client, created FROM {self._table} ORDER BY client, created"  # noqa: S608

        def listing(connection: sqlite3.Connection) -> list[IssuedToken]:
            return [IssuedToken(client, created) for client, created in connection.execute(query)]

        return await self._database.read(listing)


class PostgresClientRegistry(ClientRegistry):
    """Clients in a table of a service's PostgreSQL database (made by :func:`postgres_migration`).

    Issuing takes a transaction-scoped advisory lock on the client's name, so
    two tokens issued at once cannot take a client past its limit.
    """

    def __init__(self, database: PostgresDatabase, *, table: str) -> None:
        """Use ``table`` of ``database``; the service opens and closes the database."""
        self._database = database
        self._table = _table(table)

    async def client_of(self, digest: str) -> str | None:
        """See :meth:`ClientRegistry.client_of`."""
        row = await self._database.fetchrow(
            f"SELECT digest, client FROM {self._table} WHERE digest = $1",  # noqa: S608
            digest,
        )
        return _holder(digest, None if row is None else (row["digest"], row["client"]))

    async def _insert(self, client: str, digest: str, created: float) -> None:
        table = self._table
        async with self._database.transaction() as connection:
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"{table}:{client}"
            )
            held = await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE client = $1",  # noqa: S608 (a checked name)
                client,
            )
            if held >= MAX_TOKENS_PER_CLIENT:
                raise TooManyTokensError(client)
            await connection.execute(
                f"INSERT INTO {table} (digest, client, created) VALUES ($1, $2, $3)",  # noqa: S608
                digest,
                client,
                created,
            )

    async def revoke(self, client: str, *, oldest_only: bool = False) -> int:
        """See :meth:`ClientRegistry.revoke`."""
        query = _revoking(self._table, oldest_only=oldest_only)
        status = await self._database.execute(query, client)
        removed = int(status.rsplit(" ", 1)[-1])
        if not removed:
            raise UnknownClientError(client)
        self.changes += 1
        return removed

    async def tokens(self) -> list[IssuedToken]:
        """See :meth:`ClientRegistry.tokens`."""
        rows = await self._database.fetch(
            f"SELECT client, created FROM {self._table} ORDER BY client, created"  # noqa: S608
        )
        return [IssuedToken(row["client"], row["created"]) for row in rows]


REFUSED_CODE = "invalid_token"
"""The ``code`` of the answer to a request without a valid client token."""

_logger = logging.getLogger("servicekit.client_tokens")
_BEARER = re.compile(rb"[Bb]earer +([A-Za-z0-9._~+/-]+=*) *")
_CACHE_ENTRIES = 4096


class RequireClientToken:
    """Answers ``401`` to a request without the token of a registered client.

    Every path but ``open_paths`` needs ``Authorization: Bearer <token>``.
    The answer comes before the body is read and before any other work: no
    password checked, no attempt counted, nothing written. It carries
    ``WWW-Authenticate: Bearer realm="<realm>"`` (with
    ``error="invalid_token"`` when a token was sent but is not held by any
    client) and a JSON body with ``detail`` and ``"code": "invalid_token"``.
    The client's name goes into the request's log line, never the token.

    What the registry answers is remembered for ``cache_seconds`` (at most
    4,096 digests), so most requests cost no database read: requests for a
    digest that is being read wait for that one read, and once a known
    client's answer is older than ``cache_seconds`` it is still used while
    one read refreshes it, so a spike of requests never queues on the
    database. A token revoked by another process (``clients remove``) is
    refused at the latest ``cache_seconds`` and one read after; one revoked
    (or added) through the same registry object, at once. If the registry
    cannot be read, the request is answered ``503`` with ``Retry-After``.
    """

    def __init__(  # noqa: PLR0913 (each is a distinct knob)
        self,
        app: ASGIApp,
        *,
        registry: ClientRegistry,
        realm: str,
        open_paths: Collection[str],
        cache_seconds: float,
        unavailable: type[Exception],
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            registry: The registered clients.
            realm: The service's name, for ``WWW-Authenticate``.
            open_paths: Paths answered without a token (health checks, metrics).
            cache_seconds: How long an answer of the registry is used again.
            unavailable: The error the registry raises when its database fails.
        """
        self._app = app
        self._registry = registry
        self._realm = realm
        self._open = frozenset(open_paths)
        self._cache_seconds = cache_seconds
        self._unavailable = unavailable
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._changes_seen = registry.changes
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection scope."""
        if scope["type"] != "http" or scope["path"] in self._open:
            await self._app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token is None:
            await self._refuse(send, "A client token is required: Authorization: Bearer <token>.")
            return
        try:
            client = await self._client_of(token_digest(token))
        except self._unavailable as error:
            _logger.error("client tokens cannot be checked: %s", error)  # noqa: TRY400
            body = {
                "detail": "The database of client tokens cannot be read; try again later.",
                "code": "store_unavailable",
            }
            for message in json_answer(503, body, {"Retry-After": "1"}):
                await send(message)
            return
        if client is None:
            await self._refuse(
                send, "The client token is not valid: unknown or revoked.", invalid=True
            )
            return
        add_log_fields(scope, client=client)
        await self._app(scope, receive, send)

    async def _client_of(self, digest: str) -> str | None:
        if self._registry.changes != self._changes_seen:
            self._changes_seen = self._registry.changes
            self._cache.clear()
        cached = self._cache.get(digest)
        if cached is not None:
            self._cache.move_to_end(digest)
            client, fresh_until = cached
            now = time.monotonic()
            if fresh_until > now:
                return client
            if client is not None and now < fresh_until + self._cache_seconds:
                # A client known a moment ago is served while one read refreshes it.
                self._look_up(digest)
                return client
        return await asyncio.shield(self._look_up(digest))

    def _look_up(self, digest: str) -> asyncio.Future[str | None]:
        """Return the one read of ``digest`` under way, starting it if there is none."""
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._read(digest, self._registry.changes))
            self._pending[digest] = pending
            pending.add_done_callback(lambda done: self._forget(digest, done))
        return pending

    def _forget(self, digest: str, done: asyncio.Future[str | None]) -> None:
        self._pending.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: a refresh nobody awaits may fail

    async def _read(self, digest: str, changes: int) -> str | None:
        client = await self._registry.client_of(digest)
        if self._cache_seconds > 0 and changes == self._registry.changes:
            self._cache[digest] = (client, time.monotonic() + self._cache_seconds)
            self._cache.move_to_end(digest)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return client

    async def _refuse(self, send: Send, detail: str, *, invalid: bool = False) -> None:
        challenge = f'Bearer realm="{self._realm}"'
        if invalid:
            challenge += f', error="{REFUSED_CODE}"'
        body = {"detail": detail, "code": REFUSED_CODE}
        for message in json_answer(401, body, {"WWW-Authenticate": challenge}):
            await send(message)


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            match = _BEARER.fullmatch(value)
            return None if match is None else match.group(1).decode("ascii")
    return None
