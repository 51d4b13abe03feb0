"""The lockout rule: too many failed attempts on a username within a window lock it.

Every store applies this one rule to the counters it keeps, so SQLite and
PostgreSQL cannot disagree on it.

- The window opens with the first failure and lasts ``window_seconds``. At
  ``threshold`` failures in it, the username is refused, without hashing,
  until the window has passed; the next failure after that opens a new window.
- Known and unknown usernames are counted, and locked, alike: the same
  failures give the same answers (``429`` with ``Retry-After`` from the
  ``threshold + 1``-th attempt), at the cost of the same database work (one
  read to look the name up, one write transaction to count a failure), so
  the lockout does not tell which names exist. A user's counters are kept
  on the user's row; an unknown name's in a row of its own, under a keyed
  digest of the name (HMAC-SHA256 with a random key that the database
  keeps, so every process and replica shares it), never the name, since
  people type passwords into the username field. The one difference left:
  the failure of an unknown name that has no row yet makes one, where a
  user's updates a row, some tens of microseconds against the tens of
  milliseconds of the hash checked before it.
- A row of an unknown name whose window has passed counts as zero; it is
  reused by the name's next failure, or deleted to make room. At most
  ``max_tracked_unknown_names`` such rows are kept: counting a name that has
  no row, when the table is full, first deletes every row whose window has
  passed and then, if that is not enough, as many of the rows whose windows
  opened first as it takes (:meth:`LockoutPolicy.excess_unknown_names`). So
  an attacker who fails on more than that many distinct unknown names within
  one window can reset the counts of the oldest of them, and only then tell
  them from users, whose counters are never evicted. Deleting the rows whose
  window has passed all at once makes that one failure slower (about a
  quarter of a second for 100,000 rows in SQLite), and frees room for as
  many new names.
- A failure is counted once the password has been checked and found wrong;
  the lock is checked before. Checks already running when the threshold is
  reached still get their answer, so a burst of concurrent guesses can
  overshoot the threshold by the checks in flight (at most
  ``max_pending_hashes`` per process). Counting every attempt up front would
  close that gap, but would lock out a client that sends ``threshold``
  correct logins at once.
- A successful check clears the count, so a person who mistyped a few times
  does not carry those failures into the next window. Setting a password
  (``users set-password``) clears it too: it is how an operator unlocks. A
  name's counters are not carried over when it becomes, or stops being, a
  user: a new user starts with none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from auth_service.settings import Settings


@dataclass(frozen=True, slots=True)
class Counted:
    """A username's failure counters after a failure.

    Attributes:
        failures: The failures in the window, this one included.
        window_started: When the window opened, in seconds since the epoch.
    """

    failures: int
    window_started: float


@dataclass(frozen=True, slots=True)
class Refused:
    """The username is locked.

    Attributes:
        retry_after: Seconds until the window has passed.
    """

    retry_after: float


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """How many failures lock a username, for how long, and how many unknown names are kept.

    Attributes:
        threshold: Failures in one window that lock the username.
        window_seconds: The length of a window.
        max_tracked_unknown_names: The most unknown names whose counters are kept.
    """

    threshold: int
    window_seconds: float
    max_tracked_unknown_names: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Return the policy of the ``lockout_*`` and ``max_tracked_unknown_names`` settings."""
        return cls(
            settings.lockout_threshold,
            settings.lockout_window_seconds,
            settings.max_tracked_unknown_names,
        )

    def refusal(self, failures: int, window_started: float, now: float) -> Refused | None:
        """Tell whether a username with these counters is locked at ``now``.

        Args:
            failures: Failures counted in the username's current window.
            window_started: When that window opened, in seconds since the epoch
                (0 if it never did).
            now: The time of the attempt, in seconds since the epoch.

        Returns:
            How long the username stays locked, or ``None`` if it is not.
        """
        window_ends = window_started + self.window_seconds
        if failures < self.threshold or now >= window_ends:
            return None
        # Capped in case the window was opened by a replica whose clock is ahead.
        return Refused(retry_after=min(window_ends - now, self.window_seconds))

    def count_failure(self, failures: int, window_started: float, now: float) -> Counted:
        """Return a username's counters after a failure at ``now``.

        Args:
            failures: Failures counted in the username's current window.
            window_started: When that window opened (0 if it never did).
            now: The time of the failure, in seconds since the epoch.

        Returns:
            The new counters: the window's, one more, or a new window's.
        """
        if now >= window_started + self.window_seconds:
            return Counted(failures=1, window_started=now)
        return Counted(failures=failures + 1, window_started=window_started)

    def expired_before(self, now: float) -> float:
        """Return the time before which (inclusive) a window has passed at ``now``.

        A row whose window opened at or before it counts as zero failures.
        """
        return now - self.window_seconds

    def excess_unknown_names(self, tracked: int) -> int:
        """Return how many rows of unknown names are over the cap.

        A store that has just made a row for an unknown name, and so keeps
        ``tracked`` rows, deletes this many (and no more) before the change
        is committed: first every row whose window has passed
        (:meth:`expired_before`), then, if the rows left are still over, as
        many of those whose windows opened first.

        Args:
            tracked: The rows of unknown names kept, the new one included.
        """
        return max(0, tracked - self.max_tracked_unknown_names)
