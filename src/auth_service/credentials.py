"""Usernames and their argon2id password hashes, kept in a SQLite file."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from typing import TYPE_CHECKING, Self

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerifyMismatchError

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from auth_service.settings import Settings

MAX_USERNAME_LENGTH = 64
MAX_PASSWORD_LENGTH = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    username TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL
)
"""
_BUSY_TIMEOUT_SECONDS = 5.0


class CredentialStoreError(Exception):
    """A request to the credential store that cannot be carried out."""


class UserExistsError(CredentialStoreError):
    """The username is already taken.

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


def check_username(username: str) -> None:
    """Refuse a username that could not be stored or validated.

    Args:
        username: The candidate username.

    Raises:
        ValueError: If it is empty, longer than ``MAX_USERNAME_LENGTH`` or
            holds characters that are not printable.
    """
    if not 1 <= len(username) <= MAX_USERNAME_LENGTH:
        msg = f"a username must have 1 to {MAX_USERNAME_LENGTH} characters"
        raise ValueError(msg)
    if not username.isprintable():
        msg = "a username must hold only printable characters"
        raise ValueError(msg)


def check_password(password: str) -> None:
    """Refuse a password that could not be stored or validated.

    Args:
        password: The candidate password. It never appears in the message.

    Raises:
        ValueError: If it is empty or longer than ``MAX_PASSWORD_LENGTH``.
    """
    if not password:
        msg = "the password is empty"
        raise ValueError(msg)
    if len(password) > MAX_PASSWORD_LENGTH:
        msg = f"a password must have at most {MAX_PASSWORD_LENGTH} characters"
        raise ValueError(msg)


def password_hasher(settings: Settings) -> PasswordHasher:
    """Return an argon2id hasher with the cost parameters in ``settings``."""
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


class CredentialStore:
    """Usernames with argon2id password hashes, in a SQLite file in WAL mode.

    Every method is synchronous and safe to call from several threads at once.
    Database access is serialised by a lock; hashing runs outside it. Passwords
    are never stored, logged or returned.
    """

    def __init__(self, path: Path, *, hasher: PasswordHasher) -> None:
        """Open the database at ``path``, creating its folder, file and table if missing.

        Args:
            path: The SQLite file, relative to the working directory or absolute.
            hasher: Hashes new passwords and verifies stored hashes.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        connection = sqlite3.connect(
            path,
            timeout=_BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
        except sqlite3.Error:
            connection.close()
            raise
        self._connection = connection
        self._lock = threading.Lock()
        self._hasher = hasher
        self._dummy_hash = hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Open the store that ``settings`` describe.

        Args:
            settings: Gives the database file and the argon2id parameters.

        Returns:
            The open store; the caller closes it.
        """
        return cls(settings.database_path, hasher=password_hasher(settings))

    def __enter__(self) -> Self:
        """Return the store itself, to be closed when the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    def add(self, username: str, password: str) -> None:
        """Add a user with the argon2id hash of ``password``.

        Args:
            username: A new username.
            password: The user's password.

        Raises:
            ValueError: If the username or the password is refused; see
                ``check_username`` and ``check_password``.
            UserExistsError: If the username is taken.
        """
        check_username(username)
        check_password(password)
        password_hash = self._hasher.hash(password)
        try:
            with self._lock:
                self._connection.execute(
                    "INSERT INTO credentials (username, password_hash) VALUES (?, ?)",
                    (username, password_hash),
                )
        except sqlite3.IntegrityError as error:
            raise UserExistsError(username) from error

    def remove(self, username: str) -> None:
        """Remove a user.

        Args:
            username: The user to remove.

        Raises:
            UnknownUserError: If no user has that name.
        """
        with self._lock:
            cursor = self._connection.execute(
                "DELETE FROM credentials WHERE username = ?", (username,)
            )
        if cursor.rowcount == 0:
            raise UnknownUserError(username)

    def usernames(self) -> list[str]:
        """Return every username, sorted."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT username FROM credentials ORDER BY username"
            ).fetchall()
        return [username for (username,) in rows]

    def verify(self, username: str, password: str) -> bool:
        """Tell whether ``password`` is the password of ``username``.

        An unknown user costs the same argon2id work as a wrong password, so
        timing does not reveal which usernames exist. A hash made with other
        cost parameters than the current ones is replaced on success.

        Args:
            username: The claimed username.
            password: The claimed password.

        Returns:
            True if the user exists and the password matches, else False.
        """
        with self._lock:
            row = self._connection.execute(
                "SELECT password_hash FROM credentials WHERE username = ?", (username,)
            ).fetchone()
        if row is None:
            self._matches(self._dummy_hash, password)
            return False
        stored_hash: str = row[0]
        if not self._matches(stored_hash, password):
            return False
        if self._hasher.check_needs_rehash(stored_hash):
            self._replace_hash(username, stored_hash, self._hasher.hash(password))
        return True

    def close(self) -> None:
        """Close the database; closing twice is harmless."""
        with self._lock:
            self._connection.close()

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False

    def _replace_hash(self, username: str, old_hash: str, new_hash: str) -> None:
        with self._lock:
            self._connection.execute(
                "UPDATE credentials SET password_hash = ? WHERE username = ? AND password_hash = ?",
                (new_hash, username, old_hash),
            )
