"""What every credential store promises, and the answers it gives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servicekit.lifecycle import Openable

if TYPE_CHECKING:
    from auth_service.lockout import LockoutPolicy


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


@dataclass(frozen=True, slots=True)
class UnknownUser:
    """No user has the username; nothing was counted for it."""


@dataclass(frozen=True, slots=True)
class LockedOut:
    """The account is locked: its password must not be checked.

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


class CredentialStore(Openable, ABC):
    """Users, their argon2id hashes and their failed attempts, kept in a database.

    Every adapter keeps these promises:

    - Usernames are given in canonical form (``usernames.canonical_username``)
      and are unique, also when calls race.
    - Failure counters live in the database, so they outlive a restart and
      are shared by every process and replica using it; the rule applied to
      them is :class:`~auth_service.lockout.LockoutPolicy`.
    - No row is ever made for a username that is not a user.
    - No call blocks the event loop. Failures of the database raise
      :class:`StoreUnavailableError`.

    A store is inert until :meth:`open` (or ``async with``), which connects
    and creates or migrates the schema; it is used on the event loop that
    opened it, and may be opened again after :meth:`close`.
    """

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
        """Add a user.

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
        """Remove a user, with the user's failed attempts.

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

        Args:
            username: The canonical username.
            now: The time of the attempt, in seconds since the epoch.
            policy: The lockout rule.

        Returns:
            The hash to check, or why there is none.
        """

    @abstractmethod
    async def record_failure(self, username: str, *, now: float, policy: LockoutPolicy) -> None:
        """Count a failed attempt on ``username``, atomically however many run at once.

        An unknown username is not counted, but costs one write all the same
        (to a single row shared by all unknown names), so that the database
        work does not tell known names from unknown ones.

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
