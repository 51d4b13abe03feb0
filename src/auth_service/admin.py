"""Managing the users synchronously: for the command line, and for tests that seed a store."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Self, TypeVar

from auth_service.lockout import LockoutPolicy
from auth_service.passwords import PasswordHashing
from auth_service.store import store_from_settings
from usernames import canonical_username

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from types import TracebackType

    from auth_service.settings import Settings
    from auth_service.store import CredentialStore

_T = TypeVar("_T")


class UserAdmin:
    """The users of the database that the settings name, managed without an event loop.

    It keeps its own connection to the database (and a private event loop for
    it) from ``with`` to the end of the block, so it can run beside a served
    app on the same database, as another replica would: what it changes, the
    app sees on its next request. Methods may be called from any thread, one
    at a time; they must not be called from a running event loop.

    Usernames are canonicalised and passwords normalised as the service does.
    """

    def __init__(self, settings: Settings, *, store: CredentialStore | None = None) -> None:
        """Describe the administration; the database is opened by ``with``.

        Args:
            settings: Gives the database, the argon2id parameters and the lockout rule.
            store: The store to use instead of the one ``settings`` name.
        """
        self._store = store if store is not None else store_from_settings(settings)
        self._hashing = PasswordHashing(settings)
        self._policy = LockoutPolicy.from_settings(settings)
        self._lock = threading.Lock()
        self._runner: asyncio.Runner | None = None

    def __enter__(self) -> Self:
        """Open the database.

        Raises:
            StoreUnavailableError: If it cannot be opened.
        """
        runner = asyncio.Runner()
        try:
            runner.run(self._store.open())
        except BaseException:
            runner.close()
            raise
        self._runner = runner
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the database."""
        runner, self._runner = self._runner, None
        if runner is not None:
            with self._lock:
                try:
                    runner.run(self._store.close())
                finally:
                    runner.close()

    def add(self, username: str, password: str) -> str:
        """Add a user.

        Args:
            username: The username as typed.
            password: The password as typed.

        Returns:
            The canonical username stored.

        Raises:
            InvalidUsernameError: If the username is refused.
            InvalidPasswordError: If the password is refused.
            UserExistsError: If the username is taken.
            StoreUnavailableError: If the database fails.
        """
        canonical = canonical_username(username)
        password_hash = self._hashing.hash(password)
        self._run(self._store.add(canonical, password_hash))
        return canonical

    def set_password(self, username: str, password: str) -> str:
        """Give a user a new password, and clear the user's failed attempts.

        Returns:
            The canonical username.

        Raises:
            InvalidUsernameError: If the username is refused.
            InvalidPasswordError: If the password is refused.
            UnknownUserError: If no user has that name.
            StoreUnavailableError: If the database fails.
        """
        canonical = canonical_username(username)
        password_hash = self._hashing.hash(password)
        self._run(self._store.set_password_hash(canonical, password_hash))
        return canonical

    def remove(self, username: str) -> str:
        """Remove a user.

        Returns:
            The canonical username.

        Raises:
            InvalidUsernameError: If the username is refused.
            UnknownUserError: If no user has that name.
            StoreUnavailableError: If the database fails.
        """
        canonical = canonical_username(username)
        self._run(self._store.remove(canonical))
        return canonical

    def contains(self, username: str) -> bool:
        """Tell whether a user has the canonical form of ``username``.

        Raises:
            InvalidUsernameError: If the username is refused.
            StoreUnavailableError: If the database fails.
        """
        return self._run(self._store.contains(canonical_username(username)))

    def usernames(self) -> list[str]:
        """Return every username, in code point order.

        Raises:
            StoreUnavailableError: If the database fails.
        """
        return self._run(self._store.usernames())

    def record_failed_attempt(self, username: str) -> None:
        """Count a failed attempt on a username, as a wrong password would.

        After ``settings.lockout_threshold`` calls within the lockout window,
        the name is locked: the service answers ``429`` for it. The name need
        not be a user's: an unknown name is counted under its keyed digest,
        as a wrong password for it would be.

        Raises:
            InvalidUsernameError: If the username is refused.
            StoreUnavailableError: If the database fails.
        """
        canonical = canonical_username(username)
        self._run(self._store.record_failure(canonical, now=time.time(), policy=self._policy))

    def _run(self, call: Coroutine[object, object, _T]) -> _T:
        with self._lock:
            if self._runner is None:
                call.close()
                msg = "UserAdmin is used outside its with block"
                raise RuntimeError(msg)
            return self._runner.run(call)
