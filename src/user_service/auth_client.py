"""The credentials check: the port user-service needs, and the auth-service client filling it.

:class:`AuthClient` asks auth-service's ``POST /auth/validate`` over one
aiohttp ``ClientSession``, with keep-alive connections dropped before
auth-service's own keep-alive timeout. Each call carries the client token
in ``Authorization: Bearer``, and the time it may still take in
``X-Time-Budget-Ms``; a call that cannot be had in time, or one more than
the calls allowed in flight, is refused at once with
:class:`AuthServiceOverloadedError`, without calling. A ``401`` (the token
missing, unknown or revoked) is :class:`AuthClientRejectedError`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import aiohttp
from yarl import URL

from servicekit.deadlines import BUDGET_HEADER, budget_header, time_limit
from servicekit.lifecycle import Openable
from servicekit.logs import request_id
from servicekit.middleware import REQUEST_ID_HEADER
from servicekit.retry_after import parse_retry_after
from servicekit.upstream import bearer_authorization

if TYPE_CHECKING:
    import ssl
    from types import SimpleNamespace

    from servicekit.metrics import Metrics

UPSTREAM = "auth-service"
VALIDATE_PATH = "/auth/validate"
MAX_ANSWER_BYTES = 64 * 1024
"""The largest answer read from auth-service; a verdict takes a few dozen bytes."""

RATE_LIMITED_RETRY_AFTER = 60
"""Seconds to wait after a ``429`` that gives no readable ``Retry-After``."""

DECREASE = 0.9
"""What an overload answer multiplies the limit on calls in flight by."""

OVERLOADED_RETRY_AFTER = 1
"""Seconds to wait after a ``503`` that gives no readable ``Retry-After``, or a refused call."""


class CredentialsVerifier(Protocol):
    """Behaviour required for credential verification."""

    async def validate_credentials(self, username: str, password: str) -> bool:
        """Tell whether ``password`` is the password of ``username``.

        Raises:
            AuthServiceError: If no trustworthy answer could be had.
        """
        ...


class AuthServiceError(Exception):
    """auth-service gave no usable answer, so the credentials are neither valid nor invalid."""


class AuthServiceUnavailableError(AuthServiceError):
    """auth-service could not be reached: the request was never sent."""


class AuthServiceCertificateError(AuthServiceUnavailableError):
    """auth-service's TLS certificate could not be verified against the CA user-service trusts."""


class AuthServiceTimeoutError(AuthServiceError):
    """auth-service did not answer in time."""


class AuthServiceBadResponseError(AuthServiceError):
    """auth-service answered, but not with a verdict."""


class AuthClientRejectedError(AuthServiceError):
    """auth-service refused user-service's client token (HTTP 401): missing, unknown or revoked.

    No credential check can succeed until an operator sets the right token;
    the message never holds the token.
    """


class AuthServiceRateLimitedError(AuthServiceError):
    """auth-service refuses to check this account's credentials for now.

    Attributes:
        retry_after: Seconds until it will check them again.
    """

    def __init__(self, retry_after: int) -> None:
        """Record when to try again.

        Args:
            retry_after: Seconds until auth-service will check the credentials again.
        """
        super().__init__(f"auth-service asks to retry after {retry_after} s")
        self.retry_after = retry_after


class AuthServiceOverloadedError(AuthServiceError):
    """No credential check can be had in time now: auth-service, or the way to it, is overloaded.

    Attributes:
        retry_after: Seconds after which a check is likely to be accepted.
    """

    def __init__(self, retry_after: int, reason: str = "auth-service is overloaded") -> None:
        """Record when to try again.

        Args:
            retry_after: Seconds after which to try again, at least 1.
            reason: What was overloaded, for the logs.
        """
        super().__init__(f"{reason}; retry after {retry_after} s")
        self.retry_after = max(1, retry_after)


@dataclass
class _Attempt:
    """What one request learned of its connection, through aiohttp's tracing."""

    reused: bool = False


class _ClosedWithoutAnswerError(Exception):
    """The connection ended before the status line and headers of the answer came."""

    def __init__(self, *, reused: bool) -> None:
        super().__init__("auth-service closed the connection without answering")
        self.reused = reused


async def _mark_reused(
    _session: aiohttp.ClientSession,
    context: SimpleNamespace,
    _params: aiohttp.TraceConnectionReuseconnParams,
) -> None:
    attempt: _Attempt = context.trace_request_ctx
    attempt.reused = True


class AuthClient(Openable):
    """Production verifier: asks auth-service's ``POST /auth/validate``.

    Open it once (``open()`` or ``async with``), typically in the app's
    lifespan, and close it there: ``open()`` makes one aiohttp
    ``ClientSession`` whose connector keeps the connections alive between
    calls, and drops one left idle for ``keepalive`` seconds, before
    auth-service's own keep-alive timeout (uvicorn's is 5 s) could close it
    under a request.

    Each call's time limit is ``timeout``, or less when the request being
    served has less of its time budget left
    (:func:`servicekit.deadlines.time_limit`). It covers the whole call:
    waiting for a connection, connecting (at most ``connect_timeout``), the
    answer, and any retry. What is left of it is sent to auth-service in
    ``X-Time-Budget-Ms``. A call is refused at once, without calling, with
    :class:`AuthServiceOverloadedError`, when less than ``min_budget`` seconds
    are left, and when as many calls as the limit allows are in flight
    already: excess load is shed, not queued. The limit adapts to what
    auth-service takes (additive increase, multiplicative decrease, as TCP
    does): each overload answer (``503`` or a timeout) cuts it by a tenth,
    once per round of calls, and every other answer raises it slowly back
    toward ``max_in_flight``. So in a spike the calls auth-service would
    refuse are refused here, at no cost to its hashing cores.

    A call is retried only when its request was never sent (connection
    refused, connect timeout), at most ``retries`` times with jittered
    exponential backoff, never after a read timeout; and once, at once, when
    a reused keep-alive connection closes before any answer came (the server
    closed it while idle, so it never read the request). A fresh connection
    closed that way is not retried: the request may have been processed. An
    answer is never retried: a ``503`` (auth-service overloaded) becomes
    :class:`AuthServiceOverloadedError` with its ``Retry-After``, a ``401``
    :class:`AuthClientRejectedError`.

    The client token, when given, is sent on every call in
    ``Authorization: Bearer``; it appears in no ``repr`` and no error.
    """

    def __init__(  # noqa: PLR0913
        self,
        base_url: str,
        *,
        token: str | None = None,
        connect_timeout: float = 1.0,
        timeout: float = 3.0,
        retries: int = 2,
        backoff: float = 0.05,
        keepalive: float = 4.0,
        min_budget: float = 0.05,
        max_in_flight: int = 64,
        max_connections: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """Prepare a client; nothing is opened until :meth:`open`.

        Args:
            base_url: Base URL of auth-service, e.g. ``https://auth.internal:8001``.
            token: The client token auth-service issued for user-service; none is
                sent when omitted (auth-service then answers 401).
            connect_timeout: Seconds allowed to connect (and, over TLS, to shake hands).
            timeout: Seconds allowed for a whole call.
            retries: Retries of a call whose request was never sent.
            backoff: Seconds before the first retry; doubled for each next, with jitter.
            keepalive: Seconds an idle connection is kept for the next call.
            min_budget: The least time worth calling with; with less left, the call is refused.
            max_in_flight: The most calls in flight at once; one more is refused.
            max_connections: The most connections open at once; ``max_in_flight`` when
                omitted, so that no call waits for a connection.
            ssl_context: What auth-service's certificate is verified against, for
                ``https://`` (:func:`servicekit.upstream.client_ssl_context`); the
                system's trust store when omitted.
            metrics: Where to count calls and their duration.

        Raises:
            ValueError: If ``base_url`` is not an ``http://`` or ``https://`` URL with a
                host, ``token`` has characters a bearer token cannot have, or
                ``max_in_flight`` or ``max_connections`` is below 1.
        """
        url = URL(base_url.strip())
        if url.scheme not in {"http", "https"} or not url.host:
            msg = "the base URL of auth-service must be http:// or https:// with a host"
            raise ValueError(msg)
        if max_in_flight < 1 or (max_connections is not None and max_connections < 1):
            msg = "max_in_flight and max_connections must be at least 1"
            raise ValueError(msg)
        self._url = url.with_path(url.raw_path.rstrip("/") + VALIDATE_PATH, encoded=True)
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._keepalive = keepalive
        self._min_budget = min_budget
        self._max_in_flight = max_in_flight
        self._max_connections = max_in_flight if max_connections is None else max_connections
        self._ssl_context = ssl_context
        self._authorization = None if token is None else bearer_authorization(token)
        self._metrics = metrics
        self._in_flight = 0
        self._limit = float(max_in_flight)
        self._cut_at = 0.0
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Make the client ready for calls: open its session (once)."""
        if self._session is not None:
            return
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_reuseconn.append(_mark_reused)
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=self._keepalive,
            ssl=True if self._ssl_context is None else self._ssl_context,
        )
        headers = {"User-Agent": "user-service", "Accept-Encoding": "identity"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=[tracing],
        )

    async def close(self) -> None:
        """Close its session and connections; calls after this raise ``RuntimeError``."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def validate_credentials(self, username: str, password: str) -> bool:
        """Ask auth-service whether the credentials are valid.

        Only the ``valid`` field of the answer is read. The current request id
        is forwarded in ``X-Request-ID``, the time the call may take in
        ``X-Time-Budget-Ms``.

        Args:
            username: The username to check.
            password: The password to check; it is sent to auth-service only.

        Returns:
            auth-service's verdict.

        Raises:
            RuntimeError: If the client is not open.
            AuthServiceOverloadedError: If auth-service answered 503, or the call was
                refused without calling: too little time left, or too many calls in flight.
            AuthServiceUnavailableError: If auth-service could not be reached.
            AuthServiceTimeoutError: If auth-service did not answer in time.
            AuthServiceRateLimitedError: If auth-service answered 429.
            AuthClientRejectedError: If auth-service answered 401: it refused the client token.
            AuthServiceBadResponseError: If the answer was not a ``200`` with a boolean
                ``valid``, or the connection closed without one.
        """
        started = time.perf_counter()
        outcome = "error"
        try:
            valid = await self._validate(username, password)
            outcome = "valid" if valid else "invalid"
        except AuthServiceError as error:
            outcome = type(error).__name__
            raise
        else:
            return valid
        finally:
            if self._metrics is not None:
                self._metrics.upstream_calls.labels(UPSTREAM, outcome).inc()
                self._metrics.upstream_seconds.labels(UPSTREAM).observe(
                    time.perf_counter() - started
                )

    def refusal(self) -> AuthServiceOverloadedError | None:
        """Return why a call made now would be refused without calling, or ``None``.

        A call is refused when less than ``min_budget`` seconds of the request's
        time budget are left, or ``max_in_flight`` calls are in flight already.
        """
        if time_limit(self._timeout) < self._min_budget:
            return AuthServiceOverloadedError(
                OVERLOADED_RETRY_AFTER, reason="too little of the request's time budget is left"
            )
        if self._in_flight >= self.in_flight_limit:
            return AuthServiceOverloadedError(
                OVERLOADED_RETRY_AFTER,
                reason=f"{self._in_flight} calls to auth-service are in flight already",
            )
        return None

    @property
    def in_flight_limit(self) -> int:
        """The calls allowed in flight now: at most ``max_in_flight``, fewer after overload."""
        return max(1, int(self._limit))

    def _adapt(self, started: float, *, overloaded: bool) -> None:
        """Adjust the limit to what auth-service takes, additive increase, multiplicative decrease.

        An overload answer cuts the limit by :data:`DECREASE`, once for the
        calls that were under way together (those started before the last
        cut do not cut again); any other answer raises it by one over the
        limit, so by about one a round of calls.
        """
        if overloaded:
            if started >= self._cut_at:
                self._limit = max(1.0, self._limit * DECREASE)
                self._cut_at = time.monotonic()
        else:
            self._limit = min(float(self._max_in_flight), self._limit + 1 / self._limit)

    async def _validate(self, username: str, password: str) -> bool:
        session = self._session
        if session is None:
            msg = "the AuthClient is not open: call open() or use it in an 'async with' block"
            raise RuntimeError(msg)
        refused = self.refusal()
        if refused is not None:
            raise refused
        limit = time_limit(self._timeout)
        headers = {"Content-Type": "application/json"}
        if (rid := request_id.get()) is not None:
            headers[REQUEST_ID_HEADER] = rid
        body = json.dumps({"username": username, "password": password}).encode()
        self._in_flight += 1
        started = time.monotonic()
        try:
            verdict = await self._call_with_retries(session, body, headers, limit=limit)
        except (AuthServiceOverloadedError, AuthServiceTimeoutError):
            self._adapt(started, overloaded=True)
            raise
        except AuthServiceRateLimitedError:
            self._adapt(started, overloaded=False)
            raise
        else:
            self._adapt(started, overloaded=False)
            return verdict
        finally:
            self._in_flight -= 1

    async def _call_with_retries(
        self,
        session: aiohttp.ClientSession,
        body: bytes,
        headers: dict[str, str],
        *,
        limit: float,
    ) -> bool:
        deadline = time.monotonic() + limit
        retries_left = self._retries
        reused_retry_left = True
        left = limit
        while True:
            try:
                return await self._call(session, body, headers, left)
            except _ClosedWithoutAnswerError as closed:
                if closed.reused and reused_retry_left and self._time_left(deadline):
                    reused_retry_left = False
                    left = deadline - time.monotonic()
                    continue
                msg = "auth-service closed the connection without answering"
                raise AuthServiceBadResponseError(msg) from closed.__cause__
            except AuthServiceUnavailableError:
                if retries_left == 0:
                    raise
                delay = self._backoff * 2 ** (self._retries - retries_left)
                pause = random.uniform(delay / 2, delay * 3 / 2)  # noqa: S311
                if not self._time_left(deadline, after=pause):
                    raise
                retries_left -= 1
                await asyncio.sleep(pause)
                left = deadline - time.monotonic()

    def _time_left(self, deadline: float, *, after: float = 0.0) -> bool:
        """Whether, ``after`` seconds from now, ``min_budget`` is left before ``deadline``."""
        return deadline - time.monotonic() - after >= self._min_budget

    async def _call(
        self,
        session: aiohttp.ClientSession,
        body: bytes,
        headers: dict[str, str],
        left: float,
    ) -> bool:
        timeout = aiohttp.ClientTimeout(total=left, sock_connect=min(self._connect_timeout, left))
        attempt = _Attempt()
        answered = False
        try:
            async with session.post(
                self._url,
                data=body,
                headers={**headers, BUDGET_HEADER: budget_header(left)},
                timeout=timeout,
                allow_redirects=False,
                trace_request_ctx=attempt,
            ) as response:
                answered = True
                answer = await _read(response)
                status, retry_after = response.status, response.headers.get("Retry-After")
        except aiohttp.ConnectionTimeoutError as error:
            msg = "auth-service could not be reached in time"
            raise AuthServiceUnavailableError(msg) from error
        except aiohttp.ClientConnectorCertificateError as error:
            msg = f"auth-service's TLS certificate could not be verified: {error.certificate_error}"
            raise AuthServiceCertificateError(msg) from error
        except aiohttp.ClientConnectorError as error:  # refused, unreachable, TLS refused
            msg = "auth-service could not be reached"
            raise AuthServiceUnavailableError(msg) from error
        except TimeoutError as error:
            msg = "auth-service did not answer in time"
            raise AuthServiceTimeoutError(msg) from error
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
            if answered:
                msg = "auth-service closed the connection half-way through its answer"
                raise AuthServiceBadResponseError(msg) from error
            raise _ClosedWithoutAnswerError(reused=attempt.reused) from error
        except aiohttp.ClientError as error:
            msg = "auth-service sent a broken answer"
            raise AuthServiceBadResponseError(msg) from error
        return _verdict(status, retry_after, answer)


async def _read(response: aiohttp.ClientResponse) -> bytes:
    """Read the body of ``response``, refusing one over :data:`MAX_ANSWER_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            msg = f"auth-service's answer is over {MAX_ANSWER_BYTES} bytes"
            raise AuthServiceBadResponseError(msg)
        chunks.append(chunk)
    return b"".join(chunks)


def _verdict(status: int, retry_after: str | None, body: bytes) -> bool:
    """Read auth-service's answer: its verdict, or the error it stands for."""
    if status == 401:  # noqa: PLR2004
        msg = "auth-service refused the client token (HTTP 401): it is missing, unknown or revoked"
        raise AuthClientRejectedError(msg)
    if status == 429:  # noqa: PLR2004
        seconds = parse_retry_after(retry_after)
        raise AuthServiceRateLimitedError(RATE_LIMITED_RETRY_AFTER if seconds is None else seconds)
    if status == 503:  # noqa: PLR2004
        seconds = parse_retry_after(retry_after)
        raise AuthServiceOverloadedError(OVERLOADED_RETRY_AFTER if seconds is None else seconds)
    if status != 200:  # noqa: PLR2004
        msg = f"auth-service answered HTTP {status}"
        raise AuthServiceBadResponseError(msg)
    try:
        answer = json.loads(body)
    except ValueError as error:
        msg = "auth-service sent a broken answer"
        raise AuthServiceBadResponseError(msg) from error
    valid = answer.get("valid") if isinstance(answer, dict) else None
    if not isinstance(valid, bool):
        msg = "auth-service's answer has no boolean 'valid'"
        raise AuthServiceBadResponseError(msg)
    return valid
