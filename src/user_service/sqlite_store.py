"""Accounts kept in a SQLite file, shared safely by the worker processes of one machine."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from servicekit.client_tokens import SqliteClientRegistry, sqlite_migration
from servicekit.database_url import DEFAULT_TIMEOUT_SECONDS
from servicekit.sqlite import SqliteDatabase, statements
from servicekit.stores import DatabaseBacked
from user_service.accounts import (
    CLIENT_TOKENS_TABLE,
    AccountStoreBusyError,
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
    utc_now,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence
    from pathlib import Path

# The most creates one transaction commits; the rest wait for the next.
_MAX_BATCH = 256

DEFAULT_MAX_QUEUED_CREATES = 1024
"""Creates that may wait for their transaction (four full batches); one more is refused."""

# SQLite integers are signed 64-bit; larger Python ints cannot even be bound.
_MIN_ID = -(2**63)
_MAX_ID = 2**63 - 1

_MIGRATIONS = (
    statements(
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
    statements("ALTER TABLE idempotency_keys ADD COLUMN token TEXT"),
    sqlite_migration(CLIENT_TOKENS_TABLE),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT_ACCOUNTS = """
    INSERT INTO accounts (username, created_at) VALUES {rows}
    ON CONFLICT (username) DO NOTHING
    RETURNING id, username
"""
# The holders of the keys a batch completes, read under the write lock before it inserts.
_KEY_HOLDERS = """
    SELECT key, token, account_id FROM idempotency_keys
    WHERE key IN (SELECT value FROM json_each(?))
"""
_COMPLETE_KEY = """
    INSERT INTO idempotency_keys (key, fingerprint, token, claimed_at, account_id)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        claimed_at = excluded.claimed_at,
        account_id = excluded.account_id
    WHERE idempotency_keys.token = excluded.token AND idempotency_keys.account_id IS NULL
"""
_HELD_KEY = """
    SELECT k.fingerprint, k.claimed_at, a.id, a.username, a.created_at
    FROM idempotency_keys AS k LEFT JOIN accounts AS a ON a.id = k.account_id
    WHERE k.key = ?
"""
_TAKE_KEY = """
    INSERT INTO idempotency_keys (key, fingerprint, token, claimed_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        token = excluded.token,
        claimed_at = excluded.claimed_at,
        account_id = NULL
"""


def _to_text(moment: datetime) -> str:
    # Fixed width and always UTC, so that text order is time order (claimed_at is compared in SQL).
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True, eq=False)
class _PendingCreate:
    username: str
    idempotency: IdempotencyClaim | None
    result: asyncio.Future[UserAccount]


def _lost_claims(connection: sqlite3.Connection, batch: Sequence[_PendingCreate]) -> set[int]:
    """Return the places in ``batch`` of the creates whose claims no longer hold their keys.

    A claim holds its key while the key's row is its own and unfinished, or
    while there is no row (it was released by another request that claimed it
    meanwhile, or purged): then the first create in the batch to name the key has it.
    """
    claims = {index: pending.idempotency for index, pending in enumerate(batch)}
    keys = [claim.key for claim in claims.values() if claim is not None]
    if not keys:
        return set()
    holders: dict[str, str | None] = {
        row["key"]: row["token"] if row["account_id"] is None else None
        for row in connection.execute(_KEY_HOLDERS, (json.dumps(keys),))
    }
    lost = set()
    for index, claim in claims.items():
        if claim is None:
            continue
        if holders.setdefault(claim.key, claim.token) == claim.token:
            holders[claim.key] = None  # completed by this create
        else:
            lost.add(index)
    return lost


def _insert_accounts(
    connection: sqlite3.Connection, *, batch: Sequence[_PendingCreate], policy: IdempotencyPolicy
) -> list[UserAccount | Exception]:
    """Insert a batch of accounts with one statement, in one transaction.

    One statement rather than one a row: this runs on the writer thread, which
    must win the GIL back from the event loop after each call into SQLite.
    """
    # Stamped under the write lock, so that later ids never have earlier times.
    created_at = utc_now()
    stamp = _to_text(created_at)
    completed_at = _to_text(policy.clock())
    lost = _lost_claims(connection, batch)
    kept = [pending for index, pending in enumerate(batch) if index not in lost]
    inserted = (
        connection.execute(
            _INSERT_ACCOUNTS.format(rows=", ".join(["(?, ?)"] * len(kept))),
            [value for pending in kept for value in (pending.username, stamp)],
        ).fetchall()
        if kept
        else []
    )
    # RETURNING gives no order; a username twice in a batch is inserted once.
    new_ids = {row["username"]: row["id"] for row in inserted}
    outcomes: list[UserAccount | Exception] = []
    completed_keys = []
    for index, pending in enumerate(batch):
        claim = pending.idempotency
        if index in lost and claim is not None:
            outcomes.append(IdempotencyClaimLostError(claim.key))
            continue
        account_id = new_ids.pop(pending.username, None)
        if account_id is None:
            outcomes.append(UsernameTakenError(pending.username))
            continue
        outcomes.append(UserAccount(account_id, pending.username, created_at))
        if claim is not None:
            completed_keys.append(
                (claim.key, claim.fingerprint, claim.token, completed_at, account_id)
            )
    if completed_keys:
        connection.executemany(_COMPLETE_KEY, completed_keys)
    return outcomes


class SqliteAccountStore(DatabaseBacked[SqliteDatabase]):
    """Accounts in a SQLite file, in WAL mode, for one or several processes of one machine.

    The file, its threads, its locks and its failures are those of
    :class:`servicekit.sqlite.SqliteDatabase`. Creates are committed in
    batches: those that queue up while a transaction commits are committed
    together in the next, with one fsync. At most ``max_queued_creates`` wait;
    one more is refused with :class:`AccountStoreBusyError`.
    """

    PING_QUERY = "SELECT 1 FROM accounts LIMIT 1"

    def __init__(
        self,
        path: Path,
        *,
        policy: IdempotencyPolicy | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_queued_creates: int = DEFAULT_MAX_QUEUED_CREATES,
    ) -> None:
        """Describe a store; nothing is opened until :meth:`open`.

        Args:
            path: The database file; a relative path is relative to the working
                directory at :meth:`open`. Its folder is created if missing.
            policy: How long idempotency keys live.
            timeout_seconds: Seconds to wait for another process's write lock.
            max_queued_creates: The most creates waiting for their transaction.
        """
        self._database = SqliteDatabase(
            path,
            migrations=_MIGRATIONS,
            timeout_seconds=timeout_seconds,
            unavailable=AccountStoreUnavailableError,
            # The writer prepares an insert for each batch size up to _MAX_BATCH.
            statement_cache=_MAX_BATCH + 64,
        )
        self.clients = SqliteClientRegistry(self._database, table=CLIENT_TOKENS_TABLE)
        """The clients allowed to call user-service (frontend-web)."""
        self._policy = policy or IdempotencyPolicy()
        self._max_queued_creates = max_queued_creates
        self._pending: list[_PendingCreate] = []
        self._committer: asyncio.Task[None] | None = None
        self._accepting = False

    async def open(self) -> None:
        """Connect, and create or migrate the schema; does nothing if already open."""
        await super().open()
        self._accepting = True

    async def close(self) -> None:
        """Refuse new creates, commit those already queued, then close the database."""
        self._accepting = False
        if self._committer is not None:
            await asyncio.wait([self._committer])
        await super().close()

    async def create(
        self, username: str, *, idempotency: IdempotencyClaim | None = None
    ) -> UserAccount:
        """Queue an account for the next batch, and wait until it is on disk.

        See :meth:`AccountStore.create`.
        """
        if not self._accepting:
            msg = "the account store is closed, or closing"
            raise AccountStoreUnavailableError(msg)
        if len(self._pending) >= self._max_queued_creates:
            msg = f"{len(self._pending)} creates are waiting for the account database already"
            raise AccountStoreBusyError(msg)
        pending = _PendingCreate(username, idempotency, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_pending())
        return await pending.result

    async def _commit_pending(self) -> None:
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
                    outcomes: Sequence[UserAccount | Exception] = await self._database.write(
                        partial(_insert_accounts, batch=batch, policy=self._policy)
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

        return await self._database.read(select)

    async def claim(self, claim: IdempotencyClaim) -> ClaimOutcome:
        """Claim an idempotency key for a request about to run.

        Expired keys are purged first, in the same write transaction.
        """
        policy = self._policy

        def take(connection: sqlite3.Connection) -> ClaimOutcome:
            now = policy.clock()  # read under the write lock, which may have been waited for
            connection.execute(
                "DELETE FROM idempotency_keys WHERE claimed_at <= ?", (_to_text(now - policy.ttl),)
            )
            held = connection.execute(_HELD_KEY, (claim.key,)).fetchone()
            if held is None or (
                held["id"] is None and _from_text(held["claimed_at"]) <= now - policy.lease
            ):
                connection.execute(
                    _TAKE_KEY, (claim.key, claim.fingerprint, claim.token, _to_text(now))
                )
                return Claimed()
            if held["fingerprint"] != claim.fingerprint:
                return Mismatch()
            if held["id"] is None:
                return InFlight()
            return Completed(
                UserAccount(held["id"], held["username"], _from_text(held["created_at"]))
            )

        return await self._database.write(take)

    async def release(self, claim: IdempotencyClaim) -> None:
        """Give up an unfinished claim; see :meth:`AccountStore.release`."""
        await self._database.write(
            lambda connection: connection.execute(
                "DELETE FROM idempotency_keys WHERE key = ? AND token = ? AND account_id IS NULL",
                (claim.key, claim.token),
            )
        )

    async def reset(self) -> None:
        """Remove every account and key, and start ids at 1 again."""

        def empty(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM idempotency_keys")
            connection.execute("DELETE FROM accounts")
            connection.execute("DELETE FROM sqlite_sequence WHERE name = 'accounts'")

        await self._database.write(empty)
