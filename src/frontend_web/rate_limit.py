"""The limit on sign-up attempts per client address, counted before any other work.

Each ``POST /signup`` counts one attempt for its client address before its
body is read, its CSRF token checked or user-service called. Past the limit
the attempt is refused with a 429 page and ``Retry-After``, and nothing more
is done for it than showing the form again.

The limit is a moving window (limits' :class:`~limits.aio.strategies.MovingWindowRateLimiter`):
an address makes at most N attempts in any span of the window's length. A
fixed window would let it make 2N in a moment, N at the end of one window and
N at the start of the next, and make a person wait until the window's end
rather than until their oldest attempt is out of it. The moving window keeps
one timestamp per attempt allowed, at most N per address, which is little at
sign-up rates; a refused attempt is not counted, so whoever waits the
``Retry-After`` seconds gets through.

The address is the one in the request's scope: the socket's peer, or, from
a peer in ``FRONTEND_WEB_TRUSTED_PROXIES``, the right-most untrusted address of
``X-Forwarded-For`` (uvicorn's ``ProxyHeadersMiddleware``, see the app factory).
An IPv6 address counts for its /64 network, which one host can hold whole.

The counts live in the process (``memory://``) or in Redis (``redis://``,
``rediss://``), where every replica sharing it shares each address's count.
If Redis cannot be reached, sign-up does not depend on it: the attempt is let
through uncounted, a WARNING is logged, and for the next
:data:`UNREACHABLE_PAUSE_SECONDS` attempts are let through without trying it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import limits
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from prometheus_client import Counter

from servicekit.middleware import add_log_fields

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from fastapi import FastAPI, Request
    from limits.aio.storage import Storage
    from prometheus_client import CollectorRegistry

RATE_LIMITED = "rate_limited"
"""The error code of a refused attempt, in the request's log line."""

DEFAULT_RATE_LIMIT = "10/minute"
"""Sign-up attempts allowed per client address, unless told otherwise."""

MEMORY_STORAGE = "memory://"
"""The storage of counts in the process's memory: one process, its own counts."""

KEY_PREFIX = "frontend-web"
"""The prefix of the keys of the counts in Redis."""

STORAGE_TIMEOUT_SECONDS = 1.0
"""The most seconds that connecting to Redis, or one command there, may take."""

UNREACHABLE_PAUSE_SECONDS = 5.0
"""Seconds that attempts are let through without trying Redis after it could not be reached."""

_NAMESPACE = "sign-up"
_REDIS_SCHEMES = frozenset({"redis", "rediss"})
_IPV6_NETWORK_BITS = 64
_MAX_KEY_LENGTH = 64
_RATE_EXAMPLE = 'one rate such as "10/minute" or "100 per hour"'
_logger = logging.getLogger("frontend_web")


def parse_rate(text: str) -> limits.RateLimitItem:
    """Read a rate in limits' notation: ``AMOUNT/PERIOD`` or ``AMOUNT per [N] PERIOD``.

    Args:
        text: The rate, such as ``"10/minute"``.

    Returns:
        The rate.

    Raises:
        ValueError: If ``text`` is not one rate of at least one attempt.
    """
    try:
        rates = limits.parse_many(text)
    except ValueError:
        msg = f"must be {_RATE_EXAMPLE}: an amount per second, minute, hour, day, month or year"
        raise ValueError(msg) from None
    if len(rates) != 1:
        msg = f"must be {_RATE_EXAMPLE}, not several"
        raise ValueError(msg)
    [rate] = rates
    if rate.amount < 1:
        msg = f"must allow at least 1 attempt, as in {_RATE_EXAMPLE}"
        raise ValueError(msg)
    return rate


def check_storage_url(url: str) -> str:
    """Check the storage of the counts: ``memory://`` or ``redis[s]://[user:password@]host[:port][/db]``.

    The messages never quote ``url``, which may hold a password.

    Args:
        url: The storage's URL.

    Returns:
        ``url``.

    Raises:
        ValueError: If it is neither.
    """
    if url == MEMORY_STORAGE:
        return url
    parts = urlsplit(url)
    if parts.scheme not in _REDIS_SCHEMES:
        msg = 'must be "memory://" or a URL "redis://host:port/db" or "rediss://host:port/db"'
        raise ValueError(msg)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        msg = "must have a port that is a number"
        raise ValueError(msg) from None
    if not parts.hostname:
        msg = "must name the Redis host, as in redis://host:port/db"
        raise ValueError(msg)
    if parts.path not in {"", "/"} and not parts.path[1:].isdigit():
        msg = "must end with a database number, as in redis://host:port/0, if with anything"
        raise ValueError(msg)
    return url


def parse_trusted_proxies(value: str | Iterable[str]) -> tuple[str, ...]:
    """Read the trusted proxies: IP addresses or CIDR networks, comma-separated in a string.

    Args:
        value: The addresses and networks, in a string or one each.

    Returns:
        Each, written as :mod:`ipaddress` writes it; none for an empty string.

    Raises:
        ValueError: If one is neither an IP address nor a network.
    """
    items = value.split(",") if isinstance(value, str) else value
    proxies: list[str] = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        try:
            proxy = ipaddress.ip_network(item) if "/" in item else ipaddress.ip_address(item)
        except ValueError as error:
            msg = f"must be IP addresses or CIDR networks: {error}"
            raise ValueError(msg) from None
        proxies.append(str(proxy))
    return tuple(proxies)


def client_key(host: str | None) -> str:
    """Return what the attempts of the client at ``host`` are counted under.

    Args:
        host: The client's address, from the request's scope; None if unknown.

    Returns:
        The IPv4 address (also for an IPv4-mapped IPv6 one), the /64 network
        of an IPv6 address, or the text itself, shortened, if it is no address.
    """
    if host is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:_MAX_KEY_LENGTH]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{_IPV6_NETWORK_BITS}", strict=False))
    return str(address)


def rate_limited(retry_after: int) -> str:
    """Return the message of a refused attempt.

    Args:
        retry_after: Seconds until an attempt is allowed again, at least one.

    Returns:
        The message, with the wait in whole seconds.
    """
    unit = "second" if retry_after == 1 else "seconds"
    return f"Too many sign-up attempts from your network, please try again in {retry_after} {unit}"


def open_storage(url: str, *, key_prefix: str = KEY_PREFIX) -> Storage:
    """Build limits' async storage for ``url``; nothing is connected until it is used.

    Redis is reached through redis-py's asyncio client, with
    :data:`STORAGE_TIMEOUT_SECONDS` for connecting and for each command, and
    without retries, so that an unreachable Redis delays no sign-up for long.

    Args:
        url: ``memory://``, or a ``redis://`` or ``rediss://`` URL (see
            :func:`check_storage_url`).
        key_prefix: The prefix of the keys in Redis.

    Returns:
        The storage; errors of Redis are raised as :class:`limits.errors.StorageError`.
    """
    if check_storage_url(url) == MEMORY_STORAGE:
        return MemoryStorage(wrap_exceptions=True)
    return RedisStorage(
        f"async+{url}",
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=key_prefix,
        socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
        socket_timeout=STORAGE_TIMEOUT_SECONDS,
    )


def storage_location(url: str) -> str:
    """Return where the storage of ``url`` is, without user name or password, for the logs."""
    if url == MEMORY_STORAGE:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An attempt past the limit.

    Attributes:
        retry_after: Whole seconds until the window has room for one more, at least 1.
    """

    retry_after: int


class RateLimitMetrics:
    """The counts of the sign-up rate limit.

    Attributes:
        refused: Attempts refused for being past the limit.
        unchecked: Attempts let through uncounted because Redis could not be reached.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create the metrics in ``registry``."""
        self.refused = Counter(
            "frontend_rate_limit_refused",
            "Sign-up attempts refused for being past the rate limit of their address.",
            registry=registry,
        )
        self.unchecked = Counter(
            "frontend_rate_limit_unchecked",
            "Sign-up attempts let through uncounted: the rate limit's storage was unreachable.",
            registry=registry,
        )


class SignUpRateLimiter:
    """Counts the sign-up attempts of each client address and refuses those past the limit."""

    def __init__(
        self,
        rate: str,
        storage_url: str,
        *,
        metrics: RateLimitMetrics,
        key_prefix: str = KEY_PREFIX,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the limiter; its storage connects when first used.

        Args:
            rate: Attempts allowed per address, such as ``"10/minute"``.
            storage_url: Where the counts are kept (see :func:`open_storage`).
            metrics: Where refused and uncounted attempts are counted.
            key_prefix: The prefix of the keys in Redis.
            monotonic: The clock that times the pause after Redis was unreachable.
        """
        self._rate = parse_rate(rate)
        self._storage = open_storage(storage_url, key_prefix=key_prefix)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._location = storage_location(storage_url)
        self._metrics = metrics
        self._monotonic = monotonic
        self._paused_until = -math.inf

    async def check(self, host: str | None) -> Refusal | None:
        """Count one attempt of the client at ``host``, unless it is past the limit.

        Args:
            host: The client's address, from the request's scope.

        Returns:
            A refusal if the attempt is past the limit; None if it may go on,
            counted, or uncounted because the storage could not be reached.
        """
        if self._monotonic() < self._paused_until:
            self._metrics.unchecked.inc()
            return None
        key = client_key(host)
        try:
            if await self._limiter.hit(self._rate, _NAMESPACE, key):
                return None
            stats = await self._limiter.get_window_stats(self._rate, _NAMESPACE, key)
        except (StorageError, OSError) as error:
            cause = error.storage_error if isinstance(error, StorageError) else error
            self._paused_until = self._monotonic() + UNREACHABLE_PAUSE_SECONDS
            self._metrics.unchecked.inc()
            _logger.warning(
                "sign-up rate limit unchecked: its storage %s could not be reached (%s); "
                "attempts are let through uncounted for %g seconds",
                self._location,
                type(cause).__name__,
                UNREACHABLE_PAUSE_SECONDS,
                extra={"rate_limit_storage": self._location},
            )
            return None
        self._metrics.refused.inc()
        return Refusal(max(1, math.ceil(stats.reset_time - time.time())))

    async def close(self) -> None:
        """Close the storage's connections (Redis), or stop its expiry task (memory)."""
        if isinstance(self._storage, RedisStorage):
            # limits gives no way to close its Redis client: it is the bridge's.
            client = getattr(self._storage.bridge, "storage", None)
            if client is not None:
                await client.aclose()
        elif isinstance(self._storage, MemoryStorage) and self._storage.timer is not None:
            self._storage.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._storage.timer


def rate_limiter_of(app: FastAPI) -> SignUpRateLimiter:
    """Return the sign-up rate limiter of ``app``, an app built by ``create_app``."""
    return cast("SignUpRateLimiter", app.state.rate_limiter)


async def refusal_of(request: Request) -> Refusal | None:
    """Count a sign-up attempt of the request's client address; say if it is past the limit.

    Args:
        request: The sign-up's request; its body is not read.

    Returns:
        The refusal, also noted in the request's log line, or None.
    """
    client = request.client
    refusal = await rate_limiter_of(request.app).check(client.host if client else None)
    if refusal is not None:
        add_log_fields(request.scope, code=RATE_LIMITED, retry_after=refusal.retry_after)
    return refusal
