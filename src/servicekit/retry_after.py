"""Reading the ``Retry-After`` header (RFC 9110, section 10.2.3)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> int | None:
    """Return the seconds a ``Retry-After`` value asks to wait.

    Args:
        value: The header's value: delay-seconds (ASCII digits) or an HTTP-date.
        now: The current time, for an HTTP-date; the system clock when omitted.

    Returns:
        Whole seconds, at least 0 (an HTTP-date in the past is 0); ``None`` if
        the header is absent or neither form.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0, math.ceil(seconds))


def retry_after_value(seconds: float) -> str:
    """Return ``seconds`` as a ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
