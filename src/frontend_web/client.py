"""The HTTP client frontend-web uses to talk to user-service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Self

import aiohttp

if TYPE_CHECKING:
    from types import TracebackType

_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


@dataclass(frozen=True)
class Account:
    """An account user-service has created.

    Attributes:
        id: The identifier user-service gave the account.
        username: The account's username.
        status: What user-service did, such as ``"created"``.
    """

    id: int
    username: str
    status: str


class UserServiceError(Exception):
    """user-service failed or refused a request.

    Attributes:
        status: The HTTP status of the answer, or None when there was no answer.
        detail: A readable explanation, built from user-service's ``detail`` when it sent one.
    """

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        """Record what went wrong.

        Args:
            detail: A readable explanation of the failure.
            status: The HTTP status of the answer, or None when there was no answer.
        """
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        """Return the detail, prefixed with the HTTP status when there is one."""
        if self.status is None:
            return self.detail
        return f"user-service answered {self.status}: {self.detail}"


class InvalidCredentialsError(UserServiceError):
    """user-service rejected the username and password (HTTP 401)."""


class UserServiceUnavailableError(UserServiceError):
    """user-service could not be reached, timed out, or answered 503.

    Attributes:
        retry_after: Seconds to wait before trying again, from a 503's ``Retry-After``.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Record what went wrong.

        Args:
            detail: A readable explanation of the failure.
            status: The HTTP status of the answer, or None when there was no answer.
            retry_after: Seconds to wait before trying again, when user-service said.
        """
        super().__init__(detail, status=status)
        self.retry_after = retry_after

    def __str__(self) -> str:
        """Return the detail and status, with the advised wait when there is one."""
        text = super().__str__()
        if self.retry_after is None:
            return text
        return f"{text} (retry after {self.retry_after} s)"


class FrontendClient:
    """An async client for user-service over one pooled HTTP session.

    Open it with ``async with FrontendClient(url) as client:``, or call
    :meth:`open` and :meth:`close` from an application's lifespan.
    """

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        """Configure the client; no connection is made until it is opened.

        Args:
            base_url: user-service's base URL, such as ``http://127.0.0.1:8000``.
            timeout: The most seconds a whole request may take.

        Raises:
            ValueError: If ``timeout`` is not positive.
        """
        if timeout <= 0:
            msg = f"timeout must be positive, not {timeout}"
            raise ValueError(msg)
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """user-service's base URL, without a trailing slash."""
        return self._base_url

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
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )

    async def close(self) -> None:
        """Close the HTTP session; closing a closed client does nothing."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        """Open the client.

        Returns:
            The open client.
        """
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the client."""
        await self.close()

    async def create_account(self, username: str, password: str) -> Account:
        """Ask user-service to create an account.

        Args:
            username: The username to register.
            password: The password to register; it appears in no error message.

        Returns:
            The account user-service created.

        Raises:
            RuntimeError: If the client is not open.
            InvalidCredentialsError: If user-service answers 401.
            UserServiceUnavailableError: If user-service cannot be reached, times out,
                or answers 503.
            UserServiceError: If user-service answers any other error, or a success
                without a well-formed account.
        """
        session = self._require_session()
        url = f"{self._base_url}/accounts"
        try:
            async with session.post(
                url, json={"username": username, "password": password}
            ) as response:
                body = await response.read()
        except TimeoutError as exc:
            detail = f"user-service at {self._base_url} did not answer within {self._timeout} s"
            raise UserServiceUnavailableError(detail) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            detail = f"connection to user-service at {self._base_url} failed: {exc}"
            raise UserServiceUnavailableError(detail) from exc
        except aiohttp.ClientError as exc:
            detail = f"request to user-service at {self._base_url} failed: {exc}"
            raise UserServiceError(detail) from exc

        payload = _parse_json(body)
        status = response.status
        if HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
            return _account_from(payload, status)
        detail = _error_detail(payload, response.reason or f"HTTP {status}")
        if status == HTTPStatus.UNAUTHORIZED:
            raise InvalidCredentialsError(detail, status=status)
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            raise UserServiceUnavailableError(detail, status=status, retry_after=retry_after)
        raise UserServiceError(detail, status=status)

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


def _account_from(payload: object, status: int) -> Account:
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
            return Account(id=account_id, username=username, status=account_status)
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
    if not isinstance(item, dict):
        return None
    msg = item.get("msg")
    if not isinstance(msg, str):
        return None
    loc = item.get("loc")
    parts = [str(part) for part in loc] if isinstance(loc, list) else []
    if len(parts) > 1 and parts[0] in _REQUEST_PARTS:
        parts = parts[1:]
    field = ".".join(parts)
    return f"{field}: {msg}" if field else msg


def _parse_retry_after(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, round((when - datetime.now(UTC)).total_seconds()))
