"""Accounts, where they are kept, and the idempotency keys stored with them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from servicekit.client_tokens import InMemoryClientRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from servicekit.client_tokens import ClientRegistry


def utc_now() -> datetime:
    """Return the current time, in UTC."""
    return datetime.now(UTC)


CLIENT_TOKENS_TABLE = "user_client_tokens"
"""The table of the clients' token digests, in either database (named apart from
auth-service's, should the two share a PostgreSQL schema)."""


@dataclass(frozen=True, slots=True)
class UserAccount:
    """A stored account. It never holds a password.

    Attributes:
        id: Identifier given by the store.
        username: The account's canonical username.
        created_at: When the account was created, in UTC.
    """

    id: int
    username: str
    created_at: datetime = field(default_factory=utc_now, compare=False)


class UsernameTakenError(Exception):
    """An account with this canonical username exists already."""


class AccountStoreUnavailableError(Exception):
    """The account database cannot be reached, failed, or could not take the call now.

    Nothing was stored; the same call, made again shortly, may succeed.
    """


class AccountStoreBusyError(AccountStoreUnavailableError):
    """Too many creates are waiting for the database already: this one was refused at once."""


class IdempotencyClaimLostError(AccountStoreUnavailableError):
    """The request's claim on its idempotency key ran out and another request claimed the key.

    Nothing was stored. A retry with the key gets what the other request gets:
    its account once it completes, or "in progress" until then.
    """


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request's claim on an idempotency key.

    Attributes:
        key: The ``Idempotency-Key`` header as sent.
        fingerprint: What identifies the request's body (never derived from the password).
        token: Tells this claim from any other on the same key: the key is
            completed, or released, only while this claim still holds it.
    """

    key: str
    fingerprint: str
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)


@dataclass(frozen=True, slots=True)
class Claimed:
    """The key was free (or its earlier claim expired): the request goes ahead."""


@dataclass(frozen=True, slots=True)
class Completed:
    """The key's first request created ``account``: replay its response."""

    account: UserAccount


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another request holds the key and has not finished."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used with a different body."""


ClaimOutcome = Claimed | Completed | InFlight | Mismatch


@dataclass(frozen=True, slots=True)
class IdempotencyPolicy:
    """How long keys live.

    Attributes:
        ttl: A key is forgotten this long after it was claimed, or completed.
        lease: An unfinished claim older than this is taken to be abandoned
            (its process died) and may be claimed again.
        clock: Gives the time that claims are stamped and judged with.
    """

    ttl: timedelta = timedelta(hours=24)
    lease: timedelta = timedelta(seconds=60)
    clock: Callable[[], datetime] = field(default=utc_now, compare=False, repr=False)


class AccountStore(Protocol):
    """Where accounts are kept. Every adapter keeps these promises.

    - Usernames are unique: ``create`` raises :class:`UsernameTakenError` for a
      second account, also when many ``create`` calls race.
    - An account created with an idempotency claim is stored in the same
      transaction as the key's completion, so a replay always finds it; if
      the claim no longer holds the key, neither is stored.
    - No call blocks the event loop.
    - Any failure of the database, and any call while the store is closed or
      closing, raises :class:`AccountStoreUnavailableError`.
    - It keeps the clients allowed to call user-service in :attr:`clients`,
      which :meth:`reset` leaves alone.
    """

    @property
    def clients(self) -> ClientRegistry:
        """The clients allowed to call user-service (frontend-web), with their tokens' digests."""
        ...

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""
        ...

    async def close(self) -> None:
        """Release connections; the store may be opened again."""
        ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        ...

    async def create(
        self, username: str, *, idempotency: IdempotencyClaim | None = None
    ) -> UserAccount:
        """Create and store a new account.

        Args:
            username: Canonical username for the new account.
            idempotency: A claim made by :meth:`claim`, completed with the account.

        Returns:
            The created account.

        Raises:
            UsernameTakenError: If an account with that username exists.
            IdempotencyClaimLostError: If ``idempotency`` no longer holds its key.
            AccountStoreBusyError: If too many creates are waiting already.
        """
        ...

    async def get(self, account_id: int) -> UserAccount | None:
        """Return the account with ``account_id``, or ``None``."""
        ...

    async def claim(self, claim: IdempotencyClaim) -> ClaimOutcome:
        """Claim an idempotency key for a request about to run."""
        ...

    async def release(self, claim: IdempotencyClaim) -> None:
        """Give up an unfinished claim, so that a retry runs afresh; a key it lost stays."""
        ...

    async def reset(self) -> None:
        """Remove every account and idempotency key."""
        ...


@dataclass
class _Key:
    fingerprint: str
    token: str
    claimed_at: datetime
    account: UserAccount | None = None


class InMemoryAccountStore:
    """Small in-memory store: accounts last as long as the process. For tests and examples."""

    def __init__(self, policy: IdempotencyPolicy | None = None) -> None:
        """Initialise an empty store whose first id is 1.

        Args:
            policy: How long idempotency keys live.
        """
        self._policy = policy or IdempotencyPolicy()
        self._next_id = 1
        self._accounts: dict[int, UserAccount] = {}
        self._by_username: dict[str, UserAccount] = {}
        self._keys: dict[str, _Key] = {}
        self.clients = InMemoryClientRegistry()
        """The clients allowed to call user-service, also in memory."""

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def ping(self) -> None:
        """Always reachable."""

    async def create(
        self, username: str, *, idempotency: IdempotencyClaim | None = None
    ) -> UserAccount:
        """Create an account; see :meth:`AccountStore.create`."""
        if idempotency is not None and not self._holds(idempotency):
            raise IdempotencyClaimLostError(idempotency.key)
        if username in self._by_username:
            raise UsernameTakenError(username)
        account = UserAccount(id=self._next_id, username=username)
        self._next_id += 1
        self._accounts[account.id] = self._by_username[username] = account
        if idempotency is not None:
            self._keys[idempotency.key] = _Key(
                idempotency.fingerprint, idempotency.token, self._policy.clock(), account
            )
        return account

    async def get(self, account_id: int) -> UserAccount | None:
        """Return the account with ``account_id``, or ``None``."""
        return self._accounts.get(account_id)

    async def claim(self, claim: IdempotencyClaim) -> ClaimOutcome:
        """Claim an idempotency key for a request about to run."""
        now = self._policy.clock()
        held = self._keys.get(claim.key)
        if held is not None and now - held.claimed_at >= self._policy.ttl:
            held = None
        if held is None or (held.account is None and now - held.claimed_at >= self._policy.lease):
            self._keys[claim.key] = _Key(claim.fingerprint, claim.token, now)
            return Claimed()
        if held.fingerprint != claim.fingerprint:
            return Mismatch()
        if held.account is None:
            return InFlight()
        return Completed(held.account)

    async def release(self, claim: IdempotencyClaim) -> None:
        """Give up an unfinished claim; see :meth:`AccountStore.release`."""
        held = self._keys.get(claim.key)
        if held is not None and held.account is None and held.token == claim.token:
            del self._keys[claim.key]

    async def reset(self) -> None:
        """Remove every account and key, and start ids at 1 again."""
        self._next_id = 1
        self._accounts.clear()
        self._by_username.clear()
        self._keys.clear()

    def _holds(self, claim: IdempotencyClaim) -> bool:
        held = self._keys.get(claim.key)
        return held is None or (held.account is None and held.token == claim.token)
