"""Accounts kept in PostgreSQL, shared by any number of processes and machines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servicekit.client_tokens import PostgresClientRegistry, postgres_migration
from servicekit.database_url import DEFAULT_POSTGRES_MAX_CONNECTIONS, DEFAULT_TIMEOUT_SECONDS
from servicekit.postgres import PostgresDatabase, PostgresSchema
from servicekit.stores import DatabaseBacked
from user_service.accounts import (
    CLIENT_TOKENS_TABLE,
    AccountStoreUnavailableError,
    Claimed,
    ClaimOutcome,
    Completed,
    IdempotencyClaim,
    IdempotencyClaimLostError,
    IdempotencyPolicy,
    InFlight,
    Mismatch,
    UserAccount,
    UsernameTakenError,
)

if TYPE_CHECKING:
    import asyncpg

# Ids are bigint; a larger Python int could not even be sent as a parameter.
_MIN_ID = -(2**63)
_MAX_ID = 2**63 - 1

_TABLES = PostgresSchema(
    owner="user-service",
    version_table="schema_version",
    migrations=(
        (
            """
            CREATE TABLE accounts (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                username text NOT NULL UNIQUE,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE idempotency_keys (
                key text PRIMARY KEY,
                fingerprint text NOT NULL,
                claimed_at timestamptz NOT NULL DEFAULT now(),
                account_id bigint REFERENCES accounts (id)
            )
            """,
            "CREATE INDEX idempotency_keys_claimed_at ON idempotency_keys (claimed_at)",
        ),
        ("ALTER TABLE idempotency_keys ADD COLUMN token text",),
        postgres_migration(CLIENT_TOKENS_TABLE),
    ),
)
SCHEMA_VERSION = _TABLES.version

_INSERT_ACCOUNT = """
    INSERT INTO accounts (username) VALUES ($1)
    ON CONFLICT (username) DO NOTHING
    RETURNING id, created_at
"""
# Completes the key only if this request's claim still holds it (or nobody does).
_COMPLETE_KEY = """
    INSERT INTO idempotency_keys AS k (key, fingerprint, token, claimed_at, account_id)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (key) DO UPDATE SET
        claimed_at = excluded.claimed_at,
        account_id = excluded.account_id
    WHERE k.token = excluded.token AND k.account_id IS NULL
    RETURNING true
"""
# Takes the key if it is free, expired, or an abandoned claim. When it does not,
# ON CONFLICT DO UPDATE still locks the row until the transaction ends, so the
# follow-up _HELD_KEY reads a row that nobody can change or delete meanwhile.
_TAKE_KEY = """
    INSERT INTO idempotency_keys AS k (key, fingerprint, token, claimed_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        token = excluded.token,
        claimed_at = excluded.claimed_at,
        account_id = NULL
    WHERE k.claimed_at <= $5 OR (k.account_id IS NULL AND k.claimed_at <= $6)
    RETURNING true
"""
_HELD_KEY = """
    SELECT k.fingerprint, a.id, a.username, a.created_at
    FROM idempotency_keys AS k LEFT JOIN accounts AS a ON a.id = k.account_id
    WHERE k.key = $1
"""
# Bounded, and skips rows other transactions hold, so that it never waits on them
# nor deadlocks with them; it runs outside the claim's transaction for the same reason.
_PURGE_KEYS = """
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys WHERE claimed_at <= $1
        ORDER BY claimed_at LIMIT 100
        FOR UPDATE SKIP LOCKED
    )
"""


class PostgresAccountStore(DatabaseBacked[PostgresDatabase]):
    """Accounts in PostgreSQL, through a :class:`servicekit.postgres.PostgresDatabase` pool.

    Uniqueness and idempotency rest on the database's own constraints and row
    locks, so any number of processes may share one database. Accounts are
    stamped by the database's clock; idempotency keys by the policy's, so
    the replicas sharing a database keep their clocks in time.
    """

    PING_QUERY = "SELECT 1 FROM accounts LIMIT 1"

    def __init__(
        self,
        dsn: str,
        *,
        policy: IdempotencyPolicy | None = None,
        schema: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_connections: int = DEFAULT_POSTGRES_MAX_CONNECTIONS,
    ) -> None:
        """Describe a store; nothing is opened until :meth:`open`.

        Args:
            dsn: A ``postgresql://`` URL, or a libpq connection string.
            policy: How long idempotency keys live.
            schema: The schema holding the tables, created if missing; the
                connection's default ``search_path`` when omitted.
            timeout_seconds: The limit of each wait: connecting, taking a
                connection from the pool, and each statement.
            max_connections: Connections the pool opens at most.
        """
        self._database = PostgresDatabase(
            dsn,
            _TABLES,
            unavailable=AccountStoreUnavailableError,
            timeout_seconds=timeout_seconds,
            max_connections=max_connections,
            schema=schema,
        )
        self.clients = PostgresClientRegistry(self._database, table=CLIENT_TOKENS_TABLE)
        """The clients allowed to call user-service (frontend-web)."""
        self._policy = policy or IdempotencyPolicy()

    async def create(
        self, username: str, *, idempotency: IdempotencyClaim | None = None
    ) -> UserAccount:
        """Insert the account, and complete its key, in one transaction.

        See :meth:`AccountStore.create`.
        """
        async with self._database.transaction() as connection:
            # DO NOTHING (not an exception) also covers a racing insert: it waits
            # for that transaction, and inserts nothing if it commits.
            row = await connection.fetchrow(_INSERT_ACCOUNT, username)
            if row is None:
                raise UsernameTakenError(username)
            if idempotency is not None and not await connection.fetchval(
                _COMPLETE_KEY,
                idempotency.key,
                idempotency.fingerprint,
                idempotency.token,
                self._policy.clock(),
                row["id"],
            ):
                raise IdempotencyClaimLostError(idempotency.key)
        return UserAccount(id=row["id"], username=username, created_at=row["created_at"])

    async def get(self, account_id: int) -> UserAccount | None:
        """Return the account with ``account_id``, or ``None``."""
        if not _MIN_ID <= account_id <= _MAX_ID:
            return None
        row = await self._database.fetchrow(
            "SELECT id, username, created_at FROM accounts WHERE id = $1", account_id
        )
        if row is None:
            return None
        return UserAccount(id=row["id"], username=row["username"], created_at=row["created_at"])

    async def claim(self, claim: IdempotencyClaim) -> ClaimOutcome:
        """Claim an idempotency key for a request about to run.

        Afterwards, some expired keys are purged.
        """
        policy = self._policy
        now = policy.clock()
        async with self._database.connection() as connection:
            async with connection.transaction():
                if await connection.fetchval(
                    _TAKE_KEY,
                    claim.key,
                    claim.fingerprint,
                    claim.token,
                    now,
                    now - policy.ttl,
                    now - policy.lease,
                ):
                    outcome: ClaimOutcome = Claimed()
                else:
                    outcome = _held_outcome(await connection.fetchrow(_HELD_KEY, claim.key), claim)
            await connection.execute(_PURGE_KEYS, now - policy.ttl)
        return outcome

    async def release(self, claim: IdempotencyClaim) -> None:
        """Give up an unfinished claim; see :meth:`AccountStore.release`."""
        await self._database.execute(
            "DELETE FROM idempotency_keys WHERE key = $1 AND token = $2 AND account_id IS NULL",
            claim.key,
            claim.token,
        )

    async def reset(self) -> None:
        """Remove every account and key, and start ids at 1 again."""
        await self._database.execute("TRUNCATE idempotency_keys, accounts RESTART IDENTITY")


def _held_outcome(held: asyncpg.Record | None, claim: IdempotencyClaim) -> ClaimOutcome:
    if held is None:
        msg = f"idempotency key row vanished while locked: {claim.key!r}"
        raise AccountStoreUnavailableError(msg)
    if held["fingerprint"] != claim.fingerprint:
        return Mismatch()
    if held["id"] is None:
        return InFlight()
    return Completed(
        UserAccount(id=held["id"], username=held["username"], created_at=held["created_at"])
    )
