"""The lockout rule: too many failed attempts on an account within a window lock it.

Every store applies this one rule to the counters it keeps, so SQLite and
PostgreSQL cannot disagree on it.

- The window opens with the first failure and lasts ``window_seconds``. At
  ``threshold`` failures in it, the account is refused, without hashing,
  until the window has passed; the next failure after that opens a new window.
- A failure is counted once the password has been checked and found wrong;
  the lock is checked before. Checks already running when the threshold is
  reached still get their answer, so a burst of concurrent guesses can
  overshoot the threshold by the checks in flight (at most
  ``max_pending_hashes`` per process). Counting every attempt up front would
  close that gap, but would lock out a client that sends ``threshold``
  correct logins at once.
- A successful check clears the count, so a person who mistyped a few times
  does not carry those failures into the next window. Setting a password
  (``users set-password``) clears it too: it is how an operator unlocks.
- Unknown usernames are not counted: a row per name tried would let anyone
  grow the database without bound. The flip side is that a locked account
  answers ``429`` where an unknown name still answers ``200``, which tells an
  attacker who has already made ``threshold`` guesses that the name exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from auth_service.settings import Settings


@dataclass(frozen=True, slots=True)
class Counted:
    """An account's failure counters after a failure.

    Attributes:
        failures: The failures in the window, this one included.
        window_started: When the window opened, in seconds since the epoch.
    """

    failures: int
    window_started: float


@dataclass(frozen=True, slots=True)
class Refused:
    """The account is locked.

    Attributes:
        retry_after: Seconds until the window has passed.
    """

    retry_after: float


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """How many failures lock an account, and for how long.

    Attributes:
        threshold: Failures in one window that lock the account.
        window_seconds: The length of a window.
    """

    threshold: int
    window_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Return the policy of ``settings.lockout_threshold`` and ``lockout_window_seconds``."""
        return cls(settings.lockout_threshold, settings.lockout_window_seconds)

    def refusal(self, failures: int, window_started: float, now: float) -> Refused | None:
        """Tell whether an account with these counters is locked at ``now``.

        Args:
            failures: Failures counted in the account's current window.
            window_started: When that window opened, in seconds since the epoch
                (0 if it never did).
            now: The time of the attempt, in seconds since the epoch.

        Returns:
            How long the account stays locked, or ``None`` if it is not.
        """
        window_ends = window_started + self.window_seconds
        if failures < self.threshold or now >= window_ends:
            return None
        # Capped in case the window was opened by a replica whose clock is ahead.
        return Refused(retry_after=min(window_ends - now, self.window_seconds))

    def count_failure(self, failures: int, window_started: float, now: float) -> Counted:
        """Return an account's counters after a failure at ``now``.

        Args:
            failures: Failures counted in the account's current window.
            window_started: When that window opened (0 if it never did).
            now: The time of the failure, in seconds since the epoch.

        Returns:
            The new counters: the window's, one more, or a new window's.
        """
        if now >= window_started + self.window_seconds:
            return Counted(failures=1, window_started=now)
        return Counted(failures=failures + 1, window_started=window_started)
