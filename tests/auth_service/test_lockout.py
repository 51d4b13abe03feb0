"""The lockout rule, on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auth_service.lockout import Counted, LockoutPolicy, Refused

if TYPE_CHECKING:
    from auth_service.settings import Settings

POLICY = LockoutPolicy(threshold=3, window_seconds=100.0, max_tracked_unknown_names=5)


def test_first_failure_opens_a_window() -> None:
    assert POLICY.count_failure(0, 0.0, now=5000.0) == Counted(1, 5000.0)


def test_failures_in_the_window_are_added_up() -> None:
    assert POLICY.count_failure(1, 5000.0, now=5050.0) == Counted(2, 5000.0)


def test_failures_past_the_threshold_are_still_counted() -> None:
    assert POLICY.count_failure(3, 5000.0, now=5050.0) == Counted(4, 5000.0)


def test_failure_after_the_window_opens_a_new_one() -> None:
    assert POLICY.count_failure(3, 5000.0, now=5100.0) == Counted(1, 5100.0)


def test_fewer_failures_than_the_threshold_do_not_lock() -> None:
    assert POLICY.refusal(2, 5000.0, now=5030.0) is None


def test_threshold_locks_until_the_window_ends() -> None:
    assert POLICY.refusal(3, 5000.0, now=5030.0) == Refused(70.0)


def test_lock_ends_with_the_window() -> None:
    assert POLICY.refusal(5, 5000.0, now=5100.0) is None


def test_window_opened_ahead_of_this_clock_locks_no_longer_than_a_window() -> None:
    assert POLICY.refusal(3, 5050.0, now=5000.0) == Refused(100.0)


def test_windows_opened_a_window_ago_or_earlier_have_passed() -> None:
    cutoff = POLICY.expired_before(5100.0)

    assert cutoff == 5000.0
    assert POLICY.count_failure(3, cutoff, now=5100.0) == Counted(1, 5100.0)
    assert POLICY.refusal(3, cutoff + 0.5, now=5100.0) is not None


def test_no_unknown_name_is_over_the_cap_up_to_it() -> None:
    assert [POLICY.excess_unknown_names(tracked) for tracked in (0, 1, 5)] == [0, 0, 0]


def test_unknown_names_over_the_cap_are_counted() -> None:
    assert [POLICY.excess_unknown_names(tracked) for tracked in (6, 9)] == [1, 4]


def test_policy_follows_the_settings(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.model_copy(
        update={
            "lockout_threshold": 7,
            "lockout_window_seconds": 30.0,
            "max_tracked_unknown_names": 42,
        }
    )

    assert LockoutPolicy.from_settings(settings) == LockoutPolicy(7, 30.0, 42)
