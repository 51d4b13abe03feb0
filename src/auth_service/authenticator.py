"""Deciding whether a username and password match: lockout, hashing and the store together."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from auth_service.hash_pool import AbandonedError, OverloadedError
from auth_service.store import Admitted, LockedOut

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import Any

    from auth_service.hash_pool import HashPool
    from auth_service.lockout import LockoutPolicy
    from auth_service.store import CredentialStore

MIN_RETRY_AFTER_SECONDS = 1.0
"""The least an overloaded service asks clients to wait."""


class Outcome(StrEnum):
    """How a validation ended; also the label of the validation metric."""

    VALID = "valid"
    INVALID = "invalid"
    LOCKED = "locked"
    OVERLOADED = "overloaded"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Validation:
    """The answer to a validation.

    Attributes:
        outcome: How it ended. ``INVALID`` covers unknown users, wrong
            passwords and passwords that cannot be normalised alike.
        retry_after: For ``LOCKED``, ``OVERLOADED`` and ``ABANDONED``, seconds to wait.
    """

    outcome: Outcome
    retry_after: float | None = None


class Authenticator:
    """Checks passwords without telling unknown users from wrong passwords.

    The steps of a validation, in order:

    1. Take a place in the hash pool, or answer ``OVERLOADED`` at once when
       the pool could not finish the check by the caller's deadline; an
       overloaded request counts no failure against the account.
    2. Look the username up: a locked name, a user's or not, is answered
       ``LOCKED`` without hashing.
    3. Check the password in the pool. Unknown users, and passwords that
       cannot be normalised, are checked against a dummy hash of the same
       cost. A check dropped from the queue before it started, because the
       caller went away or its deadline passed, is ``ABANDONED``: nothing was
       learned, so nothing is counted.
    4. On failure, count it, on the user's row or on the row of the unknown
       name's digest, so that every ``INVALID`` costs the same work and an
       unknown name locks as a user does. On success, clear the account's
       failures if there are any, and store an upgraded hash if the
       parameters changed.
    """

    def __init__(
        self,
        store: CredentialStore,
        pool: HashPool,
        policy: LockoutPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Combine the collaborators.

        Args:
            store: Where the hashes and failure counters are.
            pool: Where passwords are checked.
            policy: The lockout rule.
            clock: Wall-clock seconds since the epoch; wall clock rather than
                monotonic, since replicas share the counters.
        """
        self._store = store
        self._pool = pool
        self._policy = policy
        self._clock = clock

    @property
    def pool(self) -> HashPool:
        """The hash pool the passwords are checked in."""
        return self._pool

    async def validate(
        self,
        username: str,
        password: str,
        *,
        deadline: float | None = None,
        gone: asyncio.Future[Any] | None = None,
    ) -> Validation:
        """Tell whether ``password`` is the password of ``username``.

        Args:
            username: The canonical username.
            password: The password as sent, at most ``MAX_PASSWORD_LENGTH``
                characters; it is normalised before it is checked.
            deadline: When the caller stops waiting, on the hash pool's clock.
            gone: Completes when the caller has gone away.

        Returns:
            The outcome.

        Raises:
            StoreUnavailableError: If the database fails.
        """
        try:
            slot = self._pool.reserve(deadline)
        except OverloadedError as error:
            return Validation(Outcome.OVERLOADED, max(MIN_RETRY_AFTER_SECONDS, error.retry_after))
        with slot:
            attempt = await self._store.look_up(username, now=self._clock(), policy=self._policy)
            if isinstance(attempt, LockedOut):
                return Validation(Outcome.LOCKED, attempt.retry_after)
            admitted = attempt if isinstance(attempt, Admitted) else None
            try:
                result = await slot.check(
                    admitted.password_hash if admitted else None,
                    password,
                    deadline=deadline,
                    gone=gone,
                )
            except AbandonedError:
                return Validation(Outcome.ABANDONED, MIN_RETRY_AFTER_SECONDS)
        if admitted is None or not result.matched:
            await self._store.record_failure(username, now=self._clock(), policy=self._policy)
            return Validation(Outcome.INVALID)
        if admitted.failures or result.new_hash is not None:
            await self._store.record_success(
                username, checked_hash=admitted.password_hash, new_hash=result.new_hash
            )
        return Validation(Outcome.VALID)
