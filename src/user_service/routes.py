"""The HTTP endpoints of user-service, and the one table of its error answers.

The sign-up itself is :func:`user_service.registration.register`; its domain
errors, and the failures of its collaborators, become answers in
:func:`answer_to`, each with its status, ``detail`` and ``code``.
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.disconnects import watching_for_disconnect
from servicekit.middleware import add_log_fields
from user_service.accounts import (
    AccountStoreBusyError,
    AccountStoreUnavailableError,
    IdempotencyClaimLostError,
)
from user_service.auth_client import (
    AuthServiceError,
    AuthServiceOverloadedError,
    AuthServiceRateLimitedError,
    AuthServiceTimeoutError,
    AuthServiceUnavailableError,
)
from user_service.models import (
    AccountResponse,
    CreateAccountRequest,
    CreateAccountResponse,
    ErrorCode,
    ErrorResponse,
    InvalidRequestResponse,
)
from user_service.registration import (
    ClientGoneError,
    IdempotencyKeyInProgressError,
    IdempotencyKeyMismatchError,
    InvalidCredentialsError,
    RegistrationError,
    UsernameTakenError,
    register,
)
from user_service.state import service_state_of

RETRY_AFTER_SECONDS = 5
"""Seconds advised in ``Retry-After`` when auth-service or the database cannot be reached."""

CLIENT_CLOSED_REQUEST = 499
"""The status logged for a request whose client went away first (nobody receives it)."""

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_logger = logging.getLogger("user_service")

router = APIRouter()


def _check_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        msg = "must be 1 to 255 visible ASCII characters"
        raise ValueError(msg)
    return key


def _error_responses(*codes: int, invalid: object = None) -> dict[int | str, dict[str, Any]]:
    """Document the error answers of ``codes``, and of a malformed request as ``invalid``."""
    responses: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in codes}
    if invalid is not None:
        responses[status.HTTP_422_UNPROCESSABLE_CONTENT] = {"model": invalid}
    return responses


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    responses=_error_responses(
        401, 409, 413, 429, 502, 503, 504, invalid=InvalidRequestResponse | ErrorResponse
    ),
)
async def create_account(
    payload: CreateAccountRequest,
    request: Request,
    response: Response,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1 to 255 visible ASCII characters; a retry with the same key "
            "and username gets the first answer again.",
        ),
        AfterValidator(_check_idempotency_key),
    ] = None,
) -> CreateAccountResponse:
    """Create an account after validating credentials with auth-service.

    With an ``Idempotency-Key``, the first completed answer is stored with the
    account and replayed for a retry with the same key and username.

    Args:
        payload: Account request payload.
        request: The request, whose app holds the collaborators.
        response: The response under construction, for its headers.
        key: The request's ``Idempotency-Key``, if any.

    Returns:
        Created account response.
    """
    state = service_state_of(request.app)
    async with watching_for_disconnect(request.receive) as gone:
        registered = await register(
            state.auth_verifier,
            state.account_store,
            payload.username,
            payload.password,
            key,
            gone=gone,
        )
    account = registered.account
    add_log_fields(request.scope, account_id=account.id, replayed=registered.replayed)
    if registered.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CreateAccountResponse(id=account.id, username=account.username)


@router.get(
    "/accounts/{account_id}",
    responses=_error_responses(404, invalid=InvalidRequestResponse),
)
async def get_account(account_id: int, request: Request) -> AccountResponse:
    """Return an account.

    Raises:
        HTTPException: 404 if there is no such account.
    """
    account = await service_state_of(request.app).account_store.get(account_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Account not found")
    return AccountResponse(id=account.id, username=account.username, created_at=account.created_at)


@router.get("/livez")
async def livez() -> dict[str, str]:
    """Answer while the process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=_error_responses(503))
async def readyz(request: Request) -> dict[str, str]:
    """Answer 200 while the account database can be reached, else 503.

    Raises:
        AccountStoreUnavailableError: If the database cannot be reached.
    """
    try:
        await service_state_of(request.app).account_store.ping()
    except Exception as error:
        msg = "the account database is unreachable"
        raise AccountStoreUnavailableError(msg) from error
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Render the metrics in the Prometheus text format."""
    return service_state_of(request.app).metrics.response()


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An error answer: its status, and the ``detail`` and ``code`` of its body.

    Attributes:
        status_code: The HTTP status.
        code: For a program to read.
        detail: For a person to read; for a malformed request, each refused field.
        headers: Extra headers, such as ``Retry-After``.
    """

    status_code: int
    code: ErrorCode
    detail: str | list[dict[str, Any]]
    headers: Mapping[str, str] | None = None

    def response(self) -> JSONResponse:
        """Return the answer as a JSON response."""
        return JSONResponse(
            {"detail": self.detail, "code": self.code},
            status_code=self.status_code,
            headers=self.headers,
        )


ANSWERED_ERRORS: tuple[type[Exception], ...] = (
    RegistrationError,
    UsernameTakenError,
    AuthServiceError,
    AccountStoreUnavailableError,
    RequestValidationError,
    StarletteHTTPException,
)
"""The errors :func:`answer_to` answers; the app hands each of them to :func:`error_answer`."""

_RETRY_LATER = {"Retry-After": str(RETRY_AFTER_SECONDS)}

# The answers that depend only on the kind of error. A kind not listed takes the
# answer of its nearest listed base class.
_ANSWERS: dict[type[Exception], ErrorAnswer] = {
    InvalidCredentialsError: ErrorAnswer(401, ErrorCode.INVALID_CREDENTIALS, "Invalid credentials"),
    UsernameTakenError: ErrorAnswer(409, ErrorCode.USERNAME_TAKEN, "Username already taken"),
    IdempotencyKeyInProgressError: ErrorAnswer(
        409,
        ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
        "A request with this Idempotency-Key is still in progress; retry later.",
    ),
    IdempotencyClaimLostError: ErrorAnswer(
        409,
        ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
        "A request with this Idempotency-Key is still in progress; retry later.",
    ),
    AccountStoreBusyError: ErrorAnswer(
        503,
        ErrorCode.OVERLOADED,
        "Sign-up is busy; no account was created. Try again in 1 s.",
        {"Retry-After": "1"},
    ),
    IdempotencyKeyMismatchError: ErrorAnswer(
        422,
        ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
        "This Idempotency-Key was used with a different request body.",
    ),
    ClientGoneError: ErrorAnswer(
        CLIENT_CLOSED_REQUEST, ErrorCode.CLIENT_CLOSED_REQUEST, "The client went away."
    ),
    AuthServiceUnavailableError: ErrorAnswer(
        503,
        ErrorCode.AUTH_UNAVAILABLE,
        "auth-service is unavailable; no account was created. Try again shortly.",
        _RETRY_LATER,
    ),
    AuthServiceTimeoutError: ErrorAnswer(
        504,
        ErrorCode.AUTH_TIMEOUT,
        "auth-service did not answer in time; no account was created. Try again shortly.",
    ),
    # Any other failure of the call: an answer that is not a verdict, or none.
    AuthServiceError: ErrorAnswer(
        502,
        ErrorCode.AUTH_BAD_RESPONSE,
        "auth-service gave an unusable answer; no account was created.",
    ),
    AccountStoreUnavailableError: ErrorAnswer(
        503,
        ErrorCode.STORE_UNAVAILABLE,
        "The account database is unavailable; try again shortly.",
        _RETRY_LATER,
    ),
}

# The codes of the errors the framework raises itself: no route, no such method,
# or (any other status) a body it could not parse.
_FRAMEWORK_CODES: dict[int, ErrorCode] = {
    status.HTTP_404_NOT_FOUND: ErrorCode.NOT_FOUND,
    status.HTTP_405_METHOD_NOT_ALLOWED: ErrorCode.METHOD_NOT_ALLOWED,
}


def answer_to(error: Exception) -> ErrorAnswer:
    """Return the answer to ``error``: the one place where an error gets its status and code.

    No failure of auth-service becomes a 401 or a 500, and no ``detail``
    echoes what the request sent.

    Args:
        error: One of :data:`ANSWERED_ERRORS`.

    Returns:
        The answer.

    Raises:
        TypeError: If ``error`` is of no kind answered here.
    """
    match error:
        case AuthServiceOverloadedError(retry_after=seconds):
            detail = f"Sign-up is busy; no account was created. Try again in {seconds} s."
            return ErrorAnswer(503, ErrorCode.OVERLOADED, detail, {"Retry-After": str(seconds)})
        case AuthServiceRateLimitedError(retry_after=seconds):
            detail = "Too many failed attempts for this account; try again later."
            return ErrorAnswer(
                429, ErrorCode.TOO_MANY_ATTEMPTS, detail, {"Retry-After": str(seconds)}
            )
        case RequestValidationError():
            fields = [
                {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
                for item in error.errors()
            ]
            return ErrorAnswer(422, ErrorCode.INVALID_REQUEST, fields)
        case StarletteHTTPException(status_code=status_code, detail=detail, headers=headers):
            code = _FRAMEWORK_CODES.get(status_code, ErrorCode.INVALID_REQUEST)
            return ErrorAnswer(status_code, code, detail, headers)
    for kind in type(error).__mro__:
        if (answer := _ANSWERS.get(kind)) is not None:
            return answer
    msg = f"no answer for {type(error).__name__}"
    raise TypeError(msg)


async def error_answer(_: Request, error: Exception) -> JSONResponse:
    """Answer ``error`` (one of :data:`ANSWERED_ERRORS`) as :func:`answer_to` says.

    A request whose client went away is logged with status 499; nobody receives its answer.
    """
    if isinstance(error, AccountStoreUnavailableError) and not isinstance(
        error, AccountStoreBusyError | IdempotencyClaimLostError
    ):
        _logger.error("account database unavailable", exc_info=error)
    return answer_to(error).response()
