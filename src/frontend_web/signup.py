"""What a sign-up submission becomes: the form's fields, their checks, and the outcome to show."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

from frontend_web.client import (
    ClientTokenRejectedError,
    InvalidCredentialsError,
    InvalidRequestError,
    RequestInProgressError,
    SignUpBusyError,
    TooManyAttemptsError,
    UsernameTakenError,
    UserServiceCertificateError,
    UserServiceError,
    UserServiceUnavailableError,
)
from frontend_web.settings import USER_SERVICE
from servicekit.upstream import REJECTED_TOKEN_RETRY_AFTER

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.datastructures import FormData

    from frontend_web.client import Account, FieldError, FrontendClient

USERNAME, PASSWORD = "username", "password"
FIELDS = (USERNAME, PASSWORD)
IDEMPOTENCY_KEY_FIELD = "idempotency_key"

IN_FLIGHT_RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.5)
"""Seconds to wait before each retry of a submission whose twin is still running."""

BUSY_RETRY_AFTER = 1
"""Seconds advised in ``Retry-After`` for an overloaded sign-up when user-service gave none."""

INVALID_CREDENTIALS = "Invalid credentials. Check your username and password, then try again"
USERNAME_TAKEN = "That username is already taken"
UNAVAILABLE = "Sign-up is unavailable right now, please try again shortly"
UNEXPECTED = "Something went wrong on our side, please try again"
NOT_ACCEPTED = "Your details could not be accepted, please check them and try again"
EXPIRED_FORM = "This form has expired, please try again"
IN_PROGRESS = (
    "Your sign-up is still being processed. Enter your password again and select "
    "Sign up to see the result."
)
_LABELS = {USERNAME: "Username", PASSWORD: "Password"}
_MISSING = {USERNAME: "Enter your username", PASSWORD: "Enter your password"}
_KEY = re.compile(r"[A-Za-z0-9_-]{32,255}")
# Statuses of user-service meaning that it, or auth-service behind it, is down or too slow.
_UNAVAILABLE_STATUSES = frozenset(
    {HTTPStatus.BAD_GATEWAY, HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.GATEWAY_TIMEOUT}
)
_logger = logging.getLogger("frontend_web")


def new_idempotency_key() -> str:
    """Return a fresh idempotency key for a rendered form: 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def is_idempotency_key(value: str) -> bool:
    """Tell whether ``value`` has the shape of a key from :func:`new_idempotency_key`."""
    return _KEY.fullmatch(value) is not None


@dataclass(frozen=True)
class Problem:
    """Something to tell the person about their submission.

    Attributes:
        message: The sentence to show.
        field: The form field it is about, shown beside it and linked from the
            error summary; None for the submission as a whole.
    """

    message: str
    field: str | None = None


@dataclass(frozen=True)
class Submission:
    """A submitted sign-up form, every field a string (empty when it was missing).

    Attributes:
        username: The username, stripped of surrounding white space.
        password: The password, as typed.
        idempotency_key: The form's idempotency key.
        csrf_token: The form's CSRF token.
    """

    username: str
    password: str = field(repr=False)
    idempotency_key: str
    csrf_token: str = field(repr=False)

    @classmethod
    def from_form(cls, form: FormData, *, csrf_field: str) -> Submission:
        """Read a submission from a parsed form body.

        Args:
            form: The request's form fields.
            csrf_field: The name of the CSRF token's field.

        Returns:
            The submission.
        """

        def text(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        return cls(
            username=text(USERNAME).strip(),
            password=text(PASSWORD),
            idempotency_key=text(IDEMPOTENCY_KEY_FIELD),
            csrf_token=text(csrf_field),
        )

    def missing_fields(self) -> tuple[Problem, ...]:
        """Return a problem for each empty field, so user-service is not asked in vain."""
        values = {USERNAME: self.username, PASSWORD: self.password}
        return tuple(Problem(_MISSING[name], name) for name in FIELDS if not values[name])


@dataclass(frozen=True)
class Outcome:
    """What became of a submission, to be shown to the person.

    Attributes:
        status: The HTTP status of the page.
        account: The account, when it was created (or replayed).
        problems: What went wrong, when it did.
        notice: A message that is not an error, such as "still being processed".
        keep_key: Whether the form shown next must carry the same idempotency key,
            because the account may exist or be on its way: a retry with the same
            key then gets the first answer rather than "username taken".
        retry_after: Seconds to advise in ``Retry-After``, when known.
    """

    status: int
    account: Account | None = None
    problems: tuple[Problem, ...] = ()
    notice: str | None = None
    keep_key: bool = False
    retry_after: int | None = None


async def submit(
    client: FrontendClient,
    submission: Submission,
    *,
    retry_delays: Sequence[float] = IN_FLIGHT_RETRY_DELAYS,
) -> Outcome:
    """Ask user-service to create the account and describe what happened.

    A double submit or a browser retry reaches user-service with the key of
    the first submission; while that one runs, user-service answers 409 with
    ``code`` ``idempotency_key_in_progress``. The submission is then retried
    with the same key after each of ``retry_delays``, and so gets the first
    one's answer once it is ready.

    Args:
        client: The open user-service client.
        submission: The form, its fields present.
        retry_delays: Seconds to wait before each retry while the twin runs.

    Returns:
        The outcome to show.
    """
    for delay in (*retry_delays, None):
        try:
            account = await client.create_account(
                submission.username,
                submission.password,
                idempotency_key=submission.idempotency_key,
            )
        except RequestInProgressError:
            if delay is None:
                return Outcome(HTTPStatus.ACCEPTED, notice=IN_PROGRESS, keep_key=True)
            await asyncio.sleep(delay)
        except UserServiceError as error:
            return outcome_of(error)
        else:
            return Outcome(HTTPStatus.OK, account=account)
    raise AssertionError  # pragma: no cover - the loop returns


def outcome_of(error: UserServiceError) -> Outcome:  # noqa: PLR0911 - one answer per failure
    """Return the outcome to show for a failed request to user-service.

    Args:
        error: What the client raised.

    Returns:
        The outcome; its messages never quote user-service's own wording except
        for the reasons it gives about a field.
    """
    if isinstance(error, InvalidCredentialsError):
        return Outcome(HTTPStatus.UNPROCESSABLE_ENTITY, problems=(Problem(INVALID_CREDENTIALS),))
    if isinstance(error, UsernameTakenError):
        return Outcome(HTTPStatus.CONFLICT, problems=(Problem(USERNAME_TAKEN, USERNAME),))
    if isinstance(error, InvalidRequestError):
        problems = tuple(_field_problem(field_error) for field_error in error.field_errors)
        return Outcome(
            HTTPStatus.UNPROCESSABLE_ENTITY, problems=problems or (Problem(NOT_ACCEPTED),)
        )
    if isinstance(error, TooManyAttemptsError):
        return Outcome(
            HTTPStatus.TOO_MANY_REQUESTS,
            problems=(Problem(too_many_attempts(error.retry_after)),),
            retry_after=error.retry_after,
        )
    if isinstance(error, ClientTokenRejectedError):
        _logger.error(
            "sign-up unavailable: user-service refused frontend-web's client token; set the "
            "token it issued for frontend-web in %s: %s",
            USER_SERVICE.token_settings,
            error,
        )
        return Outcome(
            HTTPStatus.SERVICE_UNAVAILABLE,
            problems=(Problem(UNAVAILABLE),),
            keep_key=True,
            retry_after=REJECTED_TOKEN_RETRY_AFTER,
        )
    if isinstance(error, SignUpBusyError):
        _logger.warning(
            "sign-up busy: %s",
            error,
            extra={"upstream_status": error.status, "upstream_called": error.called},
        )
        retry_after = BUSY_RETRY_AFTER if error.retry_after is None else max(1, error.retry_after)
        return Outcome(
            HTTPStatus.SERVICE_UNAVAILABLE,
            problems=(Problem(busy(error.retry_after)),),
            keep_key=True,
            retry_after=retry_after,
        )
    if isinstance(error, UserServiceUnavailableError) or error.status in _UNAVAILABLE_STATUSES:
        if isinstance(error, UserServiceCertificateError):
            _logger.error(
                "sign-up unavailable: check that %s names the CA that signed user-service's"
                " certificate: %s",
                USER_SERVICE.ca_file_setting,
                error,
            )
        else:
            _logger.warning(
                "sign-up unavailable: %s", error, extra={"upstream_status": error.status}
            )
        return Outcome(
            HTTPStatus.SERVICE_UNAVAILABLE,
            problems=(Problem(UNAVAILABLE),),
            keep_key=True,
            retry_after=error.retry_after,
        )
    _logger.error("sign-up failed: %s", error, extra={"upstream_status": error.status})
    return Outcome(HTTPStatus.BAD_GATEWAY, problems=(Problem(UNEXPECTED),), keep_key=True)


def too_many_attempts(retry_after: int | None) -> str:
    """Return the message for a locked-out account.

    Args:
        retry_after: Seconds to wait, from ``Retry-After``, if user-service said.

    Returns:
        The message, with the wait in whole minutes, rounded up, at least one.
    """
    if retry_after is None:
        return "Too many attempts, try again later"
    minutes = max(1, math.ceil(retry_after / 60))
    return f"Too many attempts, try again in {minutes} minute{'' if minutes == 1 else 's'}"


def busy(retry_after: int | None) -> str:
    """Return the message for an overloaded sign-up.

    Args:
        retry_after: Seconds to wait, from ``Retry-After``, if user-service said.

    Returns:
        The message, with the wait in whole seconds, at least one.
    """
    if retry_after is None:
        return "Sign-up is busy, please try again in a moment"
    seconds = max(1, retry_after)
    return f"Sign-up is busy, please try again in {seconds} second{'' if seconds == 1 else 's'}"


def _field_problem(error: FieldError) -> Problem:
    if error.field not in FIELDS:
        return Problem(f"{error.field}: {error.message}")
    label = _LABELS[error.field]
    message = error.message.removeprefix("Value error, ")
    if message == "Field required":
        return Problem(_MISSING[error.field], error.field)
    if message.startswith("String "):
        message = f"{label} {message.removeprefix('String ')}"
    elif message[:1].islower():
        message = f"{label} {message}"
    return Problem(message, error.field)
