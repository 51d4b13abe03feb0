"""Time budgets carried from hop to hop, so no service works for a caller that has given up.

A caller sends ``X-Time-Budget-Ms``: the whole milliseconds it will still wait
for the answer, counted from when it sends the request. The receiving
service turns it into a deadline on its own monotonic clock (so no two
clocks need agree), and each call it makes further on carries what is left.
"""

from __future__ import annotations

import math
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

BUDGET_HEADER = "X-Time-Budget-Ms"
"""The request header that carries the caller's remaining time budget, in whole milliseconds."""

MAX_BUDGET_MS = 3_600_000
"""The largest budget read from a request (an hour); a larger value is read as this."""

deadline: ContextVar[float | None] = ContextVar("deadline", default=None)
"""When the caller of the request being served stops waiting, on :func:`time.monotonic`'s clock.

``None`` when the caller sent no budget, or outside a request.
"""


def parse_budget(value: str) -> float | None:
    """Read a budget header's value.

    Args:
        value: The header's value: ASCII digits, at most 10 of them.

    Returns:
        The budget in seconds, capped at :data:`MAX_BUDGET_MS`; ``None`` if the
        value is not a whole number of milliseconds.
    """
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 10):  # noqa: PLR2004
        return None
    return min(int(value), MAX_BUDGET_MS) / 1000


def budget_in(headers: Iterable[tuple[bytes, bytes]]) -> float | None:
    """Return the budget, in seconds, that ASGI ``headers`` carry, or ``None``."""
    name = BUDGET_HEADER.lower().encode()
    for key, value in headers:
        if key == name:
            return parse_budget(value.decode("latin-1"))
    return None


def deadline_in(headers: Iterable[tuple[bytes, bytes]]) -> float | None:
    """Return the deadline ASGI ``headers`` give, on :func:`time.monotonic`'s clock, or ``None``."""
    budget = budget_in(headers)
    return None if budget is None else time.monotonic() + budget


def remaining(now: float | None = None) -> float | None:
    """Return the seconds left before the current request's deadline, or ``None`` if it has none.

    Args:
        now: The time on :func:`time.monotonic`'s clock; read from it when omitted.

    Returns:
        The seconds left, negative once the deadline has passed.
    """
    current = deadline.get()
    if current is None:
        return None
    return current - (time.monotonic() if now is None else now)


def time_limit(own_limit: float) -> float:
    """Return the time a call made now may take: ``own_limit``, or less if the deadline is nearer.

    Args:
        own_limit: The caller's own limit for the call, in seconds.

    Returns:
        Seconds, possibly zero or negative when the deadline has passed.
    """
    left = remaining()
    return own_limit if left is None else min(own_limit, left)


def budget_header(seconds: float) -> str:
    """Return the value of :data:`BUDGET_HEADER` for a call that may take ``seconds``.

    Rounded down, so that the callee never believes it has more time than it has.
    """
    return str(max(0, math.floor(seconds * 1000)))
