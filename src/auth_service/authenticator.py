"""Deciding whether a username and password match: lockout, hashing and the store together."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from auth_service.hash_pool import OverloadedError
from auth_service.store import Admitted, LockedOut

if TYPE_CHECKING:
    from collections.abc import Callable

    from auth_service.hash_pool import HashPool
    from auth_service.lockout import LockoutPolicy
    from auth_service.store import CredentialStore

OVERLOADED_RETRY_AFTER_SECONDS = 1.0
"""What an overloaded service asks clients to wait: about the time to drain a full queue."""


class Outcome(StrEnum):
    """How a validation ended; also the label of the validation metric."""

    VALID = "valid"
    INVALID = "invalid"
    LOCKED = "locked"
    OVERLOADED = "overloaded"


@dataclass(frozen=True, slots=True)
class Validation:
    """The answer to a validation.

    Attributes:
        outcome: How it ended. ``INVALID`` covers unknown users, wrong
            passwords and passwords that cannot be normalised alike.
        retry_after: For ``LOCKED`` and ``OVERLOADED``, seconds to wait.
    """

    outcome: Outcome
    retry_after: float | None = None


class Authenticator:
    """Checks passwords without telling unknown users from wrong passwords.

    The steps of a validation, in order:

    1. Take a place in the hash pool, or answer ``OVERLOADED`` at once; an
       overloaded request counts no failure against the account.
    2. Look the account up: a locked account is answered ``LOCKED`` without
       hashing.
    3. Check the password in the pool. Unknown users, and passwords that
       cannot be normalised, are checked against a dummy hash of the same
       cost.
    4. On failure, count it (an unknown name costs the same write, to a
       shared row), so that every ``INVALID`` costs the same work. On
       success, clear the account's failures if there are any, and store an
       upgraded hash if the parameters changed.
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

    async def validate(self, username: str, password: str) -> Validation:
        """Tell whether ``password`` is the password of ``username``.

        Args:
            username: The canonical username.
            password: The password as sent, at most ``MAX_PASSWORD_LENGTH``
                characters; it is normalised before it is checked.

        Returns:
            The outcome.

        Raises:
            StoreUnavailableError: If the database fails.
        """
        try:
            slot = self._pool.reserve()
        except OverloadedError:
            return Validation(Outcome.OVERLOADED, OVERLOADED_RETRY_AFTER_SECONDS)
        with slot:
            attempt = await self._store.look_up(username, now=self._clock(), policy=self._policy)
            if isinstance(attempt, LockedOut):
                return Validation(Outcome.LOCKED, attempt.retry_after)
            admitted = attempt if isinstance(attempt, Admitted) else None
            result = await slot.check(admitted.password_hash if admitted else None, password)
        if admitted is None or not result.matched:
            await self._store.record_failure(username, now=self._clock(), policy=self._policy)
            return Validation(Outcome.INVALID)
        if admitted.failures or result.new_hash is not None:
            await self._store.record_success(
                username, checked_hash=admitted.password_hash, new_hash=result.new_hash
            )
        return Validation(Outcome.VALID)
