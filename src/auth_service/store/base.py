"""What every credential store promises, and the answers it gives."""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servicekit.lifecycle import Openable

if TYPE_CHECKING:
    from auth_service.lockout import LockoutPolicy
    from servicekit.client_tokens import ClientRegistry


class CredentialStoreError(Exception):
    """A request to the credential store that cannot be carried out."""


class UserExistsError(CredentialStoreError):
    """The username is taken.

    Attributes:
        username: The username.
    """

    def __init__(self, username: str) -> None:
        """Describe the duplicate ``username``."""
        super().__init__(f"user {username!r} already exists")
        self.username = username


class UnknownUserError(CredentialStoreError):
    """No user has the username.

    Attributes:
        username: The username.
    """

    def __init__(self, username: str) -> None:
        """Describe the missing ``username``."""
        super().__init__(f"no user is named {username!r}")
        self.username = username


class StoreUnavailableError(CredentialStoreError):
    """The database cannot be reached, or failed; the message says why, without secrets."""


NAME_KEY_BYTES = 32
"""The length of the random key of the unknown names' digests."""


class NameDigest:
    """The keyed digest under which the failures of an unknown username are kept.

    HMAC-SHA256 of the canonical name's UTF-8 bytes, under a random key of
    :data:`NAME_KEY_BYTES` that the store's first migration to unknown-name
    counters makes and the database keeps, so that every process and replica
    using the database digests a name alike, and a copy of the table alone
    does not tell which names were tried. A store reads the key when it opens.
    """

    __slots__ = ("_key",)

    def __init__(self) -> None:
        """Make a digest with no key yet: it refuses to digest until :meth:`use_key`."""
        self._key: bytes | None = None

    def __repr__(self) -> str:
        """Never show the key."""
        return "NameDigest(key=<hidden>)"

    def use_key(self, key: bytes) -> None:
        """Digest with ``key`` from now on (the key the database keeps)."""
        self._key = bytes(key)

    def __call__(self, username: str) -> bytes:
        """Return the 32-byte digest of the canonical ``username``.

        Raises:
            StoreUnavailableError: If the store has not been opened.
        """
        if self._key is None:
            msg = "the credential store is not open"
            raise StoreUnavailableError(msg)
        return hmac.digest(self._key, username.encode(), "sha256")


@dataclass(frozen=True, slots=True)
class UnknownUser:
    """No user has the username, and the name is not locked."""


@dataclass(frozen=True, slots=True)
class LockedOut:
    """The username is locked, whether a user has it or not: no password must be checked.

    Attributes:
        retry_after: Seconds until the lock ends.
    """

    retry_after: float


@dataclass(frozen=True, slots=True)
class Admitted:
    """The account is not locked: its password may be checked.

    Attributes:
        password_hash: The hash to check the password against.
        failures: The failures counted on the account, so that a success
            clears them only when there are some.
    """

    password_hash: str
    failures: int


Attempt = UnknownUser | LockedOut | Admitted
"""What :meth:`CredentialStore.look_up` found."""


def attempt_of(
    password_hash: str | None,
    failures: int,
    window_started: float,
    *,
    now: float,
    policy: LockoutPolicy,
) -> Attempt:
    """Return what a look-up found, from the one row a store read.

    Args:
        password_hash: The user's hash, or ``None`` if no user has the name.
        failures: The failures counted on the name: the user's, or those
            under the name's digest (0 if none).
        window_started: When their window opened (0 if it never did).
        now: The time of the attempt, in seconds since the epoch.
        policy: The lockout rule.

    Returns:
        :class:`LockedOut` for a locked name, user or not; else
        :class:`Admitted` for a user, :class:`UnknownUser` for any other name.
    """
    refusal = policy.refusal(failures, window_started, now)
    if refusal is not None:
        return LockedOut(refusal.retry_after)
    if password_hash is None:
        return UnknownUser()
    return Admitted(password_hash, failures)


CLIENT_TOKENS_TABLE = "auth_client_tokens"
"""The table of the clients' token digests, in either database (named apart from
user-service's, should the two share a PostgreSQL schema)."""


class CredentialStore(Openable, ABC):
    """Users, their argon2id hashes and their failed attempts, kept in a database.

    Every adapter keeps these promises:

    - Usernames are given in canonical form (``usernames.canonical_username``)
      and are unique, also when calls race.
    - Failure counters live in the database, so they outlive a restart and
      are shared by every process and replica using it; the rule applied to
      them is :class:`~auth_service.lockout.LockoutPolicy`. A user's are on
      the user's row; those of a username that is not a user are counted and
      locked alike, in a row of their own.
    - A username that is not a user is never stored: its row is keyed by
      its :class:`NameDigest`. Such rows count as zero once their window has
      passed, and at most ``policy.max_tracked_unknown_names`` are kept (see
      :mod:`auth_service.lockout` for which go at the cap).
    - :meth:`look_up` is one read and :meth:`record_failure` one write
      transaction, for a user and for any other name alike, so that the
      database work does not tell them apart.
    - No call blocks the event loop. Failures of the database raise
      :class:`StoreUnavailableError`.

    A store is inert until :meth:`open` (or ``async with``), which connects
    and creates or migrates the schema; it is used on the event loop that
    opened it, and may be opened again after :meth:`close`. It also keeps
    the clients allowed to call auth-service, in :attr:`clients`.
    """

    clients: ClientRegistry
    """The clients allowed to call auth-service (user-service), with their tokens' digests."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema.

        Raises:
            StoreUnavailableError: If the database cannot be reached, or its
                schema is newer than this code knows.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the connections; closing a closed store is harmless."""

    @abstractmethod
    async def ping(self) -> None:
        """Check that the database answers and holds the schema.

        Raises:
            StoreUnavailableError: If it does not.
        """

    @abstractmethod
    async def add(self, username: str, password_hash: str) -> None:
        """Add a user, with no failures, whatever was counted on the name before.

        Args:
            username: The canonical username.
            password_hash: The argon2id hash of the normalised password.

        Raises:
            UserExistsError: If the username is taken.
        """

    @abstractmethod
    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace a user's hash, and clear the user's failed attempts.

        Args:
            username: The canonical username.
            password_hash: The new hash.

        Raises:
            UnknownUserError: If no user has that name.
        """

    @abstractmethod
    async def remove(self, username: str) -> None:
        """Remove a user, with the user's failed attempts; the name then counts as unknown.

        Raises:
            UnknownUserError: If no user has that name.
        """

    @abstractmethod
    async def contains(self, username: str) -> bool:
        """Tell whether a user has the canonical ``username``."""

    @abstractmethod
    async def usernames(self) -> list[str]:
        """Return every username, in code point order."""

    @abstractmethod
    async def look_up(self, username: str, *, now: float, policy: LockoutPolicy) -> Attempt:
        """Find what a password check of ``username`` needs, changing nothing.

        One read, whether a user has the name or not: the user's hash and
        counters, or the name's counters under its digest.

        Args:
            username: The canonical username.
            now: The time of the attempt, in seconds since the epoch.
            policy: The lockout rule.

        Returns:
            The hash to check, or why there is none: :class:`LockedOut` for a
            locked name, user or not, else :class:`UnknownUser` for a name
            that is not a user's.
        """

    @abstractmethod
    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failed attempt on ``username``, atomically however many run at once.

        One write transaction, whether a user has the name or not. A user's
        failure is counted on the user's row; any other name's on the row of
        its digest, made if missing (and then, at the cap, the rows over it
        are deleted in the same transaction, see
        :meth:`~auth_service.lockout.LockoutPolicy.excess_unknown_names`).

        Args:
            username: The canonical username.
            now: The time of the failure, in seconds since the epoch.
            policy: The lockout rule.
        """

    @abstractmethod
    async def record_success(
        self, username: str, *, checked_hash: str, new_hash: str | None
    ) -> None:
        """Clear the failures of a user whose password was right, and upgrade the hash.

        Args:
            username: The canonical username.
            checked_hash: The hash the password matched.
            new_hash: A hash with the current parameters, stored only if the
                user's hash is still ``checked_hash``; ``None`` to keep it.
        """
