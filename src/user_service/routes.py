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

from fastapi import APIRouter, Header, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.disconnects import watching_for_disconnect
from servicekit.middleware import add_log_fields
from servicekit.openapi import (
    IDEMPOTENT_REPLAYED,
    RETRY_AFTER,
    WWW_AUTHENTICATE,
    answer,
    idempotent_replayed_header,
    request_headers,
    retry_after_header,
    unreadable_body_problem,
    www_authenticate_header,
)
from servicekit.upstream import REJECTED_TOKEN_RETRY_AFTER
from user_service.accounts import (
    AccountStoreBusyError,
    AccountStoreUnavailableError,
    IdempotencyClaimLostError,
)
from user_service.auth_client import (
    AuthClientRejectedError,
    AuthServiceCertificateError,
    AuthServiceError,
    AuthServiceOverloadedError,
    AuthServiceRateLimitedError,
    AuthServiceTimeoutError,
    AuthServiceUnavailableError,
)
from user_service.models import (
    AccountResponse,
    AuthBadResponse,
    AuthTimeout,
    BodyTooLarge,
    Conflict,
    CreateAccountRequest,
    CreateAccountResponse,
    CredentialsOrTokenRefused,
    ErrorCode,
    Health,
    IdempotencyKeyMismatch,
    InvalidRequestResponse,
    NotFound,
    ShuttingDown,
    SignUpUnavailable,
    StoreUnavailable,
    TokenRefused,
    TooManyAttempts,
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
from user_service.settings import AUTH_SERVICE
from user_service.state import service_state_of

RETRY_AFTER_SECONDS = 5
"""Seconds advised in ``Retry-After`` when auth-service or the database cannot be reached."""

OPEN_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
"""The paths answered without a client token: the probes and the metrics (no usernames)."""

REALM = "user-service"
"""The realm of the client token's ``WWW-Authenticate`` challenge."""

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


_TOKEN_REFUSED = answer(
    "No client token, or one that no registered client holds (`invalid_token`).",
    TokenRefused,
    headers={WWW_AUTHENTICATE: www_authenticate_header(REALM)},
)


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_account",
    summary="Create an account",
    description=(
        "Creates an account once auth-service has said the credentials are valid; the "
        "password is never stored. With an `Idempotency-Key`, the first completed answer "
        "is kept with the account and replayed, with `Idempotent-Replayed: true`, to a retry "
        "with the same key and username. The answers that share a status are told apart "
        "by `code`."
    ),
    openapi_extra=request_headers(budget=True, protected=True),
    responses={
        status.HTTP_201_CREATED: answer(
            "The account was created, or this is the stored answer to the first request "
            "with this `Idempotency-Key`.",
            headers={IDEMPOTENT_REPLAYED: idempotent_replayed_header()},
            links={
                "GetAccount": {
                    "operationId": "get_account",
                    "parameters": {"account_id": "$response.body#/id"},
                    "description": "The account just created, by the `id` of this answer.",
                }
            },
        ),
        status.HTTP_401_UNAUTHORIZED: answer(
            "auth-service said the password is not the user's (`invalid_credentials`), or "
            "the client token is not valid (`invalid_token`, with `WWW-Authenticate`).",
            CredentialsOrTokenRefused,
            headers={WWW_AUTHENTICATE: www_authenticate_header(REALM, required=False)},
        ),
        status.HTTP_409_CONFLICT: answer(
            "An account for that (canonical) username exists (`username_taken`), or another "
            "request holds the `Idempotency-Key` and has not finished "
            "(`idempotency_key_in_progress`; retry later).",
            Conflict,
        ),
        status.HTTP_413_CONTENT_TOO_LARGE: answer(
            "The body is over 16 KiB (`body_too_large`); refused before it is read.",
            BodyTooLarge,
        ),
        status.HTTP_422_UNPROCESSABLE_CONTENT: answer(
            "A missing, mistyped or refused field, a body that is not JSON, or a malformed "
            "`Idempotency-Key` (`invalid_request`, each refused part in `detail`); or the "
            "`Idempotency-Key` was used with another username (`idempotency_key_mismatch`).",
            InvalidRequestResponse | IdempotencyKeyMismatch,
        ),
        status.HTTP_429_TOO_MANY_REQUESTS: answer(
            "auth-service has locked the account out (`too_many_attempts`).",
            TooManyAttempts,
            headers={RETRY_AFTER: retry_after_header()},
        ),
        status.HTTP_502_BAD_GATEWAY: answer(
            "auth-service answered without a verdict, with another status, or closed the "
            "connection (`auth_bad_response`).",
            AuthBadResponse,
        ),
        status.HTTP_503_SERVICE_UNAVAILABLE: answer(
            "No account was created; a retry after `Retry-After` may succeed: no check can "
            "be had in time now (`overloaded`), auth-service cannot be reached "
            "(`auth_unavailable`), the account database cannot be used "
            "(`store_unavailable`), or the service is stopping (`shutting_down`).",
            SignUpUnavailable,
            headers={RETRY_AFTER: retry_after_header()},
        ),
        status.HTTP_504_GATEWAY_TIMEOUT: answer(
            "auth-service did not answer in time (`auth_timeout`).", AuthTimeout
        ),
    },
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
        WithJsonSchema({"type": "string", "pattern": f"^{_IDEMPOTENCY_KEY.pattern}$"}),
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
    operation_id="get_account",
    summary="Read an account",
    description="Returns the account with this id, as `POST /accounts` answered it.",
    openapi_extra=request_headers(budget=False, protected=True),
    responses={
        status.HTTP_200_OK: answer("The account."),
        status.HTTP_401_UNAUTHORIZED: _TOKEN_REFUSED,
        status.HTTP_404_NOT_FOUND: answer("There is no such account (`not_found`).", NotFound),
        status.HTTP_422_UNPROCESSABLE_CONTENT: answer(
            "The id is not a whole number (`invalid_request`).", InvalidRequestResponse
        ),
        status.HTTP_503_SERVICE_UNAVAILABLE: answer(
            "The account database cannot be used (`store_unavailable`), or the service is "
            "stopping (`shutting_down`).",
            StoreUnavailable,
            headers={RETRY_AFTER: retry_after_header()},
        ),
    },
)
async def get_account(
    account_id: Annotated[int, Path(description="The account's `id`.")], request: Request
) -> AccountResponse:
    """Return an account.

    Raises:
        HTTPException: 404 if there is no such account.
    """
    account = await service_state_of(request.app).account_store.get(account_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Account not found")
    return AccountResponse(id=account.id, username=account.username, created_at=account.created_at)


_SHUTTING_DOWN = answer(
    "The service is stopping (`shutting_down`).",
    ShuttingDown,
    headers={RETRY_AFTER: retry_after_header()},
)


@router.get(
    "/livez",
    operation_id="livez",
    summary="Liveness",
    description="Answers while the process is up; open without a client token.",
    openapi_extra=request_headers(budget=False),
    responses={
        status.HTTP_200_OK: answer("The process is up."),
        status.HTTP_503_SERVICE_UNAVAILABLE: _SHUTTING_DOWN,
    },
)
async def livez() -> Health:
    """Answer while the process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness",
    description="Answers `200` while the account database can be reached, else `503`; "
    "open without a client token.",
    openapi_extra=request_headers(budget=False),
    responses={
        status.HTTP_200_OK: answer("The account database can be reached."),
        status.HTTP_503_SERVICE_UNAVAILABLE: answer(
            "The account database cannot be reached (`store_unavailable`), or the service "
            "is stopping (`shutting_down`).",
            StoreUnavailable,
            headers={RETRY_AFTER: retry_after_header()},
        ),
    },
)
async def readyz(request: Request) -> Health:
    """Answer 200 while the account database can be reached, else 503.

    Raises:
        AccountStoreUnavailableError: If the database cannot be reached.
    """
    try:
        await service_state_of(request.app).account_store.ping()
    except Exception as error:
        msg = "the account database is unreachable"
        raise AccountStoreUnavailableError(msg) from error
    return Health(status="ok")


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
_CERTIFICATE_LOG = (
    "auth-service's certificate is not trusted; check that"
    f" {AUTH_SERVICE.ca_file_setting} names the CA that signed it: %s"
)
_TOKEN_REFUSED_LOG = (
    "auth-service refused user-service's client token; set the token it issued "
    f"for user-service in {AUTH_SERVICE.token_settings}: %s"
)

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
    # Not the end user's fault, and no 401: their credentials were never checked.
    AuthClientRejectedError: ErrorAnswer(
        503,
        ErrorCode.AUTH_UNAVAILABLE,
        "Sign-up is unavailable; try again later.",
        {"Retry-After": str(REJECTED_TOKEN_RETRY_AFTER)},
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
        case StarletteHTTPException(status_code=status.HTTP_400_BAD_REQUEST):
            # FastAPI's answer to a body it could not read as JSON: 422, as documented.
            return ErrorAnswer(422, ErrorCode.INVALID_REQUEST, [unreadable_body_problem()])
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
    if isinstance(error, AuthClientRejectedError):
        _logger.error(_TOKEN_REFUSED_LOG, error)
    if isinstance(error, AuthServiceCertificateError):
        _logger.error(_CERTIFICATE_LOG, error)
    return answer_to(error).response()
