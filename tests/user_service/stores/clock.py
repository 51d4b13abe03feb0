"""A clock that a test moves by hand, for key lifetimes without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from user_service.accounts import IdempotencyPolicy


class ManualClock:
    """Starts at the real time, in UTC, and moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def policy_on(clock: ManualClock, *, ttl: timedelta, lease: timedelta) -> IdempotencyPolicy:
    """The lifetimes ``ttl`` and ``lease``, judged by ``clock``."""
    return IdempotencyPolicy(ttl=ttl, lease=lease, clock=clock)
