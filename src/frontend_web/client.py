"""The HTTP client frontend-web uses to talk to user-service.

Each call carries frontend-web's client token in ``Authorization: Bearer``.
user-service answers 401 in two ways, told apart by ``WWW-Authenticate``: with
it, user-service refused the token (:class:`ClientTokenRejectedError`);
without it, the person's credentials (:class:`InvalidCredentialsError`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

import aiohttp

from servicekit.deadlines import BUDGET_HEADER, budget_header, time_limit
from servicekit.lifecycle import Openable
from servicekit.logs import request_id
from servicekit.middleware import REQUEST_ID_HEADER
from servicekit.retry_after import parse_retry_after
from servicekit.upstream import bearer_authorization

if TYPE_CHECKING:
    import ssl

    from servicekit.metrics import Metrics

UPSTREAM = "user-service"
"""The ``upstream`` label of the calls this client counts."""

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_REPLAYED_HEADER = "Idempotent-Replayed"
_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})

DEFAULT_MAX_IN_FLIGHT = 64
"""Calls to user-service one client has in flight at most, unless told otherwise."""

MIN_CALL_SECONDS = 0.05
"""The least time worth a call: with less left of the request's budget, none is made."""

SHED_RETRY_AFTER = 1
"""Seconds to advise waiting when the client refuses a call itself, without making it."""

KEEPALIVE_SECONDS = 4.0
"""How long an idle pooled connection is kept: below uvicorn's 5 s keep-alive, so that
the client closes it first and never sends a request on a connection being closed."""


@dataclass(frozen=True)
class Account:
    """An account user-service has created.

    Attributes:
        id: The identifier user-service gave the account.
        username: The account's username.
        status: What user-service did, such as ``"created"``.
        replayed: Whether user-service replayed the answer to an earlier request with
            the same ``Idempotency-Key`` rather than creating the account now.
    """

    id: int
    username: str
    status: str
    replayed: bool = False


@dataclass(frozen=True)
class FieldError:
    """One field of a request that user-service refused (HTTP 422).

    Attributes:
        field: The field's name, such as ``"username"``, without the request part.
        message: What is wrong with it, as user-service said.
    """

    field: str
    message: str


class UserServiceError(Exception):
    """user-service failed or refused a request.

    Attributes:
        status: The HTTP status of the answer, or None when there was no answer.
        detail: A readable explanation, built from user-service's ``detail`` when it sent one.
        retry_after: Seconds to wait before trying again, when user-service said.
        code: The ``code`` of user-service's answer, such as ``"username_taken"``,
            when it sent one.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        """Record what went wrong.

        Args:
            detail: A readable explanation of the failure.
            status: The HTTP status of the answer, or None when there was no answer.
            retry_after: Seconds to wait before trying again, from ``Retry-After``.
            code: The ``code`` of the answer, if it had one.
        """
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.code = code

    def __str__(self) -> str:
        """Return the detail, with the HTTP status and the advised wait when known."""
        text = (
            self.detail
            if self.status is None
            else f"user-service answered {self.status}: {self.detail}"
        )
        if self.retry_after is None:
            return text
        return f"{text} (retry after {self.retry_after} s)"


class InvalidCredentialsError(UserServiceError):
    """user-service rejected the username and password (HTTP 401 without ``WWW-Authenticate``)."""


class UsernameTakenError(UserServiceError):
    """An account with this username exists already (HTTP 409, ``code`` ``"username_taken"``)."""


class RequestInProgressError(UserServiceError):
    """An earlier request with the same ``Idempotency-Key`` is still running (HTTP 409).

    Retrying with the same key once it has finished gets its answer.
    user-service gives this and :class:`UsernameTakenError` the same status;
    they are told apart by ``code``: ``"idempotency_key_in_progress"`` here.
    """


class InvalidRequestError(UserServiceError):
    """user-service refused the request as malformed (HTTP 422).

    Attributes:
        field_errors: The fields named in the answer, in its order; empty when
            user-service gave only a sentence, such as for a bad ``Idempotency-Key``.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        code: str | None = None,
        field_errors: tuple[FieldError, ...] = (),
    ) -> None:
        """Record what went wrong.

        Args:
            detail: A readable explanation of the failure.
            status: The HTTP status of the answer.
            retry_after: Seconds to wait before trying again, from ``Retry-After``.
            code: The ``code`` of the answer, if it had one.
            field_errors: The fields user-service refused.
        """
        super().__init__(detail, status=status, retry_after=retry_after, code=code)
        self.field_errors = field_errors


class TooManyAttemptsError(UserServiceError):
    """Too many failed attempts for this account; ``retry_after`` says how long to wait (429)."""


class UserServiceUnavailableError(UserServiceError):
    """user-service, or auth-service behind it, could not be reached, timed out, or answered 503."""


class UserServiceCertificateError(UserServiceUnavailableError):
    """user-service's TLS certificate could not be verified against the CA frontend-web trusts."""


class ClientTokenRejectedError(UserServiceUnavailableError):
    """user-service refused frontend-web's client token (HTTP 401 with ``WWW-Authenticate``).

    The token is missing, unknown or revoked: no sign-up can work until an
    operator sets the right one. The person's credentials were never checked.
    """


class SignUpBusyError(UserServiceUnavailableError):
    """Sign-up is overloaded; trying again after ``retry_after`` seconds is likely to work.

    Raised when user-service answers 503 with ``code`` ``"overloaded"``, and, without
    calling user-service, when this client already has as many calls in flight
    as it allows or too little is left of the request's time budget.

    Attributes:
        called: Whether user-service was asked (False when the client refused the call itself).
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        code: str | None = None,
        called: bool = True,
    ) -> None:
        """Record what went wrong.

        Args:
            detail: A readable explanation of the failure.
            status: The HTTP status of the answer, or None when no call was made.
            retry_after: Seconds to wait before trying again, from ``Retry-After``.
            code: The ``code`` of the answer, if it had one.
            called: Whether user-service was asked.
        """
        super().__init__(detail, status=status, retry_after=retry_after, code=code)
        self.called = called


# The answers of user-service that share their status with another, told apart
# by their ``code``; a 409 with neither code is no answer this client knows.
_ERRORS_BY_CODE: dict[tuple[int, str], type[UserServiceError]] = {
    (HTTPStatus.CONFLICT, "username_taken"): UsernameTakenError,
    (HTTPStatus.CONFLICT, "idempotency_key_in_progress"): RequestInProgressError,
    (HTTPStatus.SERVICE_UNAVAILABLE, "overloaded"): SignUpBusyError,
}
# The answers told by their status alone (a 422 is read apart, for its fields).
_ERRORS_BY_STATUS: dict[int, type[UserServiceError]] = {
    HTTPStatus.UNAUTHORIZED: InvalidCredentialsError,
    HTTPStatus.TOO_MANY_REQUESTS: TooManyAttemptsError,
    HTTPStatus.SERVICE_UNAVAILABLE: UserServiceUnavailableError,
}


class FrontendClient(Openable):
    """An async client for user-service over one pooled HTTP session.

    Open it with ``async with FrontendClient(url) as client:``, or call
    :meth:`open` and :meth:`close` from an application's lifespan.

    Each call sends user-service its time budget in ``X-Time-Budget-Ms``: the
    client's own timeout, or less when the request being served has a nearer
    deadline. At most ``max_in_flight`` calls are in flight at once; one more is
    refused at once with :class:`SignUpBusyError` rather than queued.

    The client token, when given, is sent on every call; it appears in no
    ``repr`` and no error.
    """

    def __init__(  # noqa: PLR0913 - the connection's settings, by keyword
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        ssl_context: ssl.SSLContext | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """Configure the client; no connection is made until it is opened.

        Args:
            base_url: user-service's base URL, such as ``https://users.internal:8000``.
            token: The client token user-service issued for frontend-web; none is
                sent when omitted (user-service then answers 401).
            timeout: The most seconds a whole request may take.
            max_in_flight: The most calls in flight at once; the connection pool
                holds as many connections.
            ssl_context: What user-service's certificate is verified against, for
                ``https://`` (:func:`servicekit.upstream.client_ssl_context`); the
                system's trust store when omitted.
            metrics: Where to count calls to user-service and their duration.

        Raises:
            ValueError: If ``timeout`` is not positive, ``max_in_flight`` is below 1,
                or ``token`` has characters a bearer token cannot have.
        """
        if timeout <= 0:
            msg = f"timeout must be positive, not {timeout}"
            raise ValueError(msg)
        if max_in_flight < 1:
            msg = f"max_in_flight must be at least 1, not {max_in_flight}"
            raise ValueError(msg)
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._metrics = metrics
        self._ssl_context = ssl_context
        self._headers = {} if token is None else {"Authorization": bearer_authorization(token)}
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """user-service's base URL, without a trailing slash."""
        return self._base_url

    @property
    def in_flight(self) -> int:
        """How many calls to user-service are in flight now."""
        return self._in_flight

    @property
    def is_open(self) -> bool:
        """Whether the client holds an open session."""
        return self._session is not None

    async def open(self) -> None:
        """Create the pooled HTTP session.

        Raises:
            RuntimeError: If the client is already open.
        """
        if self._session is not None:
            msg = "FrontendClient is already open"
            raise RuntimeError(msg)
        # As many connections as calls in flight, so that no admitted call waits for one.
        connector = aiohttp.TCPConnector(
            limit=self._max_in_flight,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ssl=True if self._ssl_context is None else self._ssl_context,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )

    async def close(self) -> None:
        """Close the HTTP session; closing a closed client does nothing."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def create_account(
        self, username: str, password: str, *, idempotency_key: str | None = None
    ) -> Account:
        """Ask user-service to create an account.

        The request id of the request being served, if any, is forwarded in
        ``X-Request-ID``.

        Args:
            username: The username to register.
            password: The password to register; it appears in no error message.
            idempotency_key: Sent as the ``Idempotency-Key`` header when given, so
                that a retry with the same key and username gets the first answer
                instead of creating a second account.

        Returns:
            The account user-service created, or replayed for ``idempotency_key``.

        Raises:
            RuntimeError: If the client is not open.
            ClientTokenRejectedError: If user-service answers 401 with ``WWW-Authenticate``:
                it refused this client's token.
            InvalidCredentialsError: If user-service answers 401 without it.
            RequestInProgressError: If user-service answers 409 with ``code``
                ``"idempotency_key_in_progress"``: a request with the same
                ``idempotency_key`` is still running.
            UsernameTakenError: If user-service answers 409 with ``code`` ``"username_taken"``.
            InvalidRequestError: If user-service answers 422.
            TooManyAttemptsError: If user-service answers 429.
            SignUpBusyError: If user-service answers 503 with ``code`` ``"overloaded"``, or,
                without calling it, if ``max_in_flight`` calls are in flight already
                or less than :data:`MIN_CALL_SECONDS` is left of the time budget.
            UserServiceUnavailableError: If user-service cannot be reached, times out,
                or answers another 503.
            UserServiceError: If user-service answers any other error, or a success
                without a well-formed account.
        """
        session = self._require_session()
        limit = time_limit(self._timeout)
        if limit < MIN_CALL_SECONDS or self._in_flight >= self._max_in_flight:
            self._count("shed")
            reason = (
                f"{self._max_in_flight} calls to user-service are in flight already"
                if limit >= MIN_CALL_SECONDS
                else f"{max(limit, 0):.3f} s left of the time budget is too little for a call"
            )
            raise SignUpBusyError(reason, retry_after=SHED_RETRY_AFTER, called=False)
        self._in_flight += 1
        started = time.perf_counter()
        outcome = "error"
        try:
            account = await self._create_account(
                session, limit, username, password, idempotency_key
            )
        except UserServiceError as error:
            outcome = type(error).__name__
            raise
        else:
            outcome = "replayed" if account.replayed else "created"
            return account
        finally:
            self._in_flight -= 1
            self._count(outcome, time.perf_counter() - started)

    def _count(self, outcome: str, seconds: float | None = None) -> None:
        if self._metrics is None:
            return
        self._metrics.upstream_calls.labels(UPSTREAM, outcome).inc()
        if seconds is not None:
            self._metrics.upstream_seconds.labels(UPSTREAM).observe(seconds)

    async def _create_account(
        self,
        session: aiohttp.ClientSession,
        limit: float,
        username: str,
        password: str,
        idempotency_key: str | None,
    ) -> Account:
        url = f"{self._base_url}/accounts"
        headers = {BUDGET_HEADER: budget_header(limit)}
        if idempotency_key is not None:
            headers[IDEMPOTENCY_KEY_HEADER] = idempotency_key
        if (rid := request_id.get()) is not None:
            headers[REQUEST_ID_HEADER] = rid
        try:
            async with session.post(
                url,
                json={"username": username, "password": password},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as response:
                body = await response.read()
        except TimeoutError as exc:
            detail = f"user-service at {self._base_url} did not answer within {limit:.3g} s"
            raise UserServiceUnavailableError(detail) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            detail = (
                f"the TLS certificate of user-service at {self._base_url} could not be "
                f"verified: {exc.certificate_error}"
            )
            raise UserServiceCertificateError(detail) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            detail = f"connection to user-service at {self._base_url} failed: {exc}"
            raise UserServiceUnavailableError(detail) from exc
        except aiohttp.ClientError as exc:
            detail = f"request to user-service at {self._base_url} failed: {exc}"
            raise UserServiceError(detail) from exc

        payload = _parse_json(body)
        status = response.status
        if HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
            replayed = response.headers.get(_REPLAYED_HEADER, "").strip().lower() == "true"
            return _account_from(payload, status, replayed=replayed)
        detail = _error_detail(payload, response.reason or f"HTTP {status}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        code = _error_code(payload)
        if status == HTTPStatus.UNAUTHORIZED and "WWW-Authenticate" in response.headers:
            detail = (
                f"user-service at {self._base_url} refused this client's token: "
                "it is missing, unknown or revoked"
            )
            raise ClientTokenRejectedError(detail, status=status, code=code)
        if status == HTTPStatus.UNPROCESSABLE_ENTITY:
            raise InvalidRequestError(
                detail,
                status=status,
                retry_after=retry_after,
                code=code,
                field_errors=_field_errors(payload),
            )
        error = _ERRORS_BY_CODE.get((status, code or "")) or _ERRORS_BY_STATUS.get(
            status, UserServiceError
        )
        raise error(detail, status=status, retry_after=retry_after, code=code)

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            msg = (
                "FrontendClient is not open: use 'async with FrontendClient(...)' "
                "or await its open() first"
            )
            raise RuntimeError(msg)
        return self._session


def _parse_json(body: bytes) -> object:
    try:
        parsed: object = json.loads(body)
    except ValueError:
        return None
    return parsed


def _account_from(payload: object, status: int, *, replayed: bool) -> Account:
    if isinstance(payload, dict):
        account_id = payload.get("id")
        username = payload.get("username")
        account_status = payload.get("status")
        if (
            isinstance(account_id, int)
            and not isinstance(account_id, bool)
            and isinstance(username, str)
            and isinstance(account_status, str)
        ):
            return Account(
                id=account_id, username=username, status=account_status, replayed=replayed
            )
    detail = (
        "user-service answered success without a well-formed account: "
        "expected JSON with integer 'id' and string 'username' and 'status'"
    )
    raise UserServiceError(detail, status=status)


def _error_detail(payload: object, fallback: str) -> str:
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list):
        messages = [message for item in detail if (message := _validation_message(item))]
        if messages:
            return "; ".join(messages)
    return fallback


def _validation_message(item: object) -> str | None:
    error = _field_error(item)
    if error is None:
        return None
    return f"{error.field}: {error.message}" if error.field else error.message


def _field_errors(payload: object) -> tuple[FieldError, ...]:
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if not isinstance(detail, list):
        return ()
    return tuple(error for item in detail if (error := _field_error(item)) and error.field)


def _field_error(item: object) -> FieldError | None:
    if not isinstance(item, dict):
        return None
    msg = item.get("msg")
    if not isinstance(msg, str):
        return None
    loc = item.get("loc")
    parts = [str(part) for part in loc] if isinstance(loc, list) else []
    if len(parts) > 1 and parts[0] in _REQUEST_PARTS:
        parts = parts[1:]
    return FieldError(field=".".join(parts), message=msg)


def _error_code(payload: object) -> str | None:
    code = payload.get("code") if isinstance(payload, dict) else None
    return code if isinstance(code, str) else None
