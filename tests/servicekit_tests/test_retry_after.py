from __future__ import annotations

from datetime import UTC, datetime

import pytest

from servicekit.retry_after import parse_retry_after, retry_after_value

NOW = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0),
        ("7", 7),
        (" 120 ", 120),
        ("Tue, 01 Dec 2026 08:00:30 GMT", 30),
        ("Tue, 01 Dec 2026 07:59:00 GMT", 0),
    ],
)
def test_delay_seconds_and_http_dates_are_read(value: str, seconds: int) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "²", "٣", "Tue, 01 Dec 2026"])
def test_anything_else_is_no_answer(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (899.5, "900")]
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    seconds: float, header: str
) -> None:
    assert retry_after_value(seconds) == header
