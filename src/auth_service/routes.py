"""The HTTP API of auth-service.

- ``POST /auth/validate``: ``200 {"valid": bool, "subject": canonical username}``;
  ``422`` for a malformed body or an invalid username; ``429`` with
  ``Retry-After`` while the account is locked; ``503`` with ``Retry-After``
  and ``"code": "overloaded"`` when the hash pool cannot check in time (before
  the body is read, when it is full), and ``503`` when the database fails.
  Every error body carries ``detail`` and a ``code`` (:class:`ErrorCode`).
- ``GET /livez``: the process is up. ``GET /readyz``: the database answers
  (else ``503``). ``GET /metrics``: Prometheus metrics.

Every request gets a request id (``X-Request-ID``), a JSON log line and
request metrics from :class:`servicekit.middleware.ServiceMiddleware`; every
validation also gets a log line with the username and the outcome, never
the password.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from auth_service.authenticator import MIN_RETRY_AFTER_SECONDS, Outcome
from auth_service.metrics import UNAVAILABLE
from auth_service.models import (
    BodyTooLarge,
    CheckUnavailable,
    Credentials,
    ErrorCode,
    Health,
    InvalidRequestProblem,
    LockedOut,
    NotReady,
    ShuttingDown,
    TokenRefused,
    ValidationAnswer,
)
from auth_service.state import ServiceState, service_state_of
from auth_service.store import StoreUnavailableError
from servicekit.deadlines import deadline
from servicekit.disconnects import watching_for_disconnect
from servicekit.openapi import (
    RETRY_AFTER,
    WWW_AUTHENTICATE,
    answer,
    request_headers,
    retry_after_header,
    unreadable_body_problem,
    www_authenticate_header,
)
from servicekit.retry_after import retry_after_value

ANSWER_MARGIN_SECONDS = 0.05
"""Time kept back from the caller's budget for the answer's way back to it."""

VALIDATE = "/auth/validate"
"""The path of the credential check."""

OPEN_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
"""The paths answered without a client token: the probes and the metrics (no usernames)."""

REALM = "auth-service"
"""The realm of the client token's ``WWW-Authenticate`` challenge."""

_logger = logging.getLogger("auth_service.validations")

router = APIRouter()


def overloaded(retry_after: float) -> JSONResponse:
    """Return the answer to a check that cannot be made in time: ``503`` with ``Retry-After``.

    Args:
        retry_after: Seconds after which a check is likely to be admitted.
    """
    return JSONResponse(
        {
            "detail": "Too many password checks are pending; try again later.",
            "code": ErrorCode.OVERLOADED,
        },
        status_code=HTTPStatus.SERVICE_UNAVAILABLE,
        headers={"Retry-After": retry_after_value(max(MIN_RETRY_AFTER_SECONDS, retry_after))},
    )


def work_deadline() -> float | None:
    """Return when a check must be done for its answer to reach the caller in time.

    The caller's deadline (:data:`servicekit.deadlines.deadline`), less
    :data:`ANSWER_MARGIN_SECONDS` for the answer's way back; ``None`` if the
    caller gave no budget.
    """
    caller = deadline.get()
    return None if caller is None else caller - ANSWER_MARGIN_SECONDS


_SHUTTING_DOWN = answer(
    "The service is stopping (`shutting_down`).",
    ShuttingDown,
    headers={RETRY_AFTER: retry_after_header()},
)


@router.post(
    VALIDATE,
    response_model=ValidationAnswer,
    operation_id="validate",
    summary="Check a username and password",
    description=(
        "Checks the password against the user's argon2id hash. An unknown user and a wrong "
        "password get the same answer, `200` with `valid: false`. A check that cannot be "
        "made by the caller's deadline (`X-Time-Budget-Ms`) is refused at once, before the "
        "body is read. The answers that share a status are told apart by `code`."
    ),
    openapi_extra=request_headers(budget=True, protected=True),
    responses={
        HTTPStatus.OK: answer("The verdict, and the canonical username it is about."),
        HTTPStatus.UNAUTHORIZED: answer(
            "No client token, or one that no registered client holds (`invalid_token`).",
            TokenRefused,
            headers={WWW_AUTHENTICATE: www_authenticate_header(REALM)},
        ),
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE: answer(
            "The body is over 16 KiB (`body_too_large`); refused before it is read.",
            BodyTooLarge,
        ),
        HTTPStatus.UNPROCESSABLE_ENTITY: answer(
            "A missing, mistyped or refused field (an invalid username, say), or a body "
            "that is not JSON (`invalid_request`, each refused part in `detail`).",
            InvalidRequestProblem,
        ),
        HTTPStatus.TOO_MANY_REQUESTS: answer(
            "Too many failed attempts for this username (`locked_out`); no check was made.",
            LockedOut,
            headers={RETRY_AFTER: retry_after_header()},
        ),
        HTTPStatus.SERVICE_UNAVAILABLE: answer(
            "The check was not made: none can be had in time now (`overloaded`, with "
            "`Retry-After`), the credential database cannot be used (`store_unavailable`), "
            "or the service is stopping (`shutting_down`, with `Retry-After`).",
            CheckUnavailable,
            headers={RETRY_AFTER: retry_after_header(required=False)},
        ),
    },
)
async def validate(credentials: Credentials, request: Request) -> Response:
    """Check a username and password.

    Args:
        credentials: The canonical username and the password.
        request: The request, whose app holds the service.

    Returns:
        ``200`` with ``valid`` and ``subject``; ``429`` or ``503`` with
        ``Retry-After``; ``503`` without it if the database fails. A check
        that cannot finish by the caller's deadline (``X-Time-Budget-Ms``), or
        whose caller disconnects while it waits for a thread, is not hashed.
    """
    state = service_state_of(request.app)
    username = credentials.username
    try:
        async with watching_for_disconnect(request.receive) as gone:
            validation = await state.authenticator.validate(
                username, credentials.password, deadline=work_deadline(), gone=gone
            )
    except StoreUnavailableError as error:
        _record(state, username, UNAVAILABLE, logging.ERROR, reason=str(error))
        return JSONResponse(
            {
                "detail": "The credential store is unavailable; try again later.",
                "code": ErrorCode.STORE_UNAVAILABLE,
            },
            status_code=HTTPStatus.SERVICE_UNAVAILABLE,
        )
    outcome = validation.outcome
    if outcome in {Outcome.VALID, Outcome.INVALID}:
        _record(state, username, outcome, logging.INFO)
        return JSONResponse({"valid": outcome is Outcome.VALID, "subject": username})
    _record(state, username, outcome, logging.WARNING)
    if outcome is Outcome.LOCKED:
        return JSONResponse(
            {
                "detail": "Too many failed attempts for this account; try again later.",
                "code": ErrorCode.LOCKED_OUT,
            },
            status_code=HTTPStatus.TOO_MANY_REQUESTS,
            headers={"Retry-After": retry_after_value(validation.retry_after or 0)},
        )
    return overloaded(validation.retry_after or 0)


def _record(state: ServiceState, username: str, outcome: str, level: int, **details: str) -> None:
    state.auth_metrics.validations.labels(outcome).inc()
    _logger.log(
        level,
        "validation %s",
        outcome,
        extra={"username": username, "outcome": outcome, **details},
    )


@router.get(
    "/livez",
    operation_id="livez",
    summary="Liveness",
    description="Answers while the process is up; open without a client token.",
    openapi_extra=request_headers(budget=False),
    responses={
        HTTPStatus.OK: answer("The process is up."),
        HTTPStatus.SERVICE_UNAVAILABLE: _SHUTTING_DOWN,
    },
)
async def livez() -> Health:
    """Answer that the process is alive.

    Returns:
        ``{"status": "ok"}``.
    """
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    operation_id="readyz",
    summary="Readiness",
    description="Answers `200` while the credential database can be used, else `503`; open "
    "without a client token.",
    openapi_extra=request_headers(budget=False),
    responses={
        HTTPStatus.OK: answer("The credential database can be used."),
        HTTPStatus.SERVICE_UNAVAILABLE: answer(
            'The credential database cannot be used (`{"status": "unavailable"}`), or the '
            "service is stopping (`shutting_down`, with `Retry-After`).",
            NotReady | ShuttingDown,
            headers={RETRY_AFTER: retry_after_header(required=False)},
        ),
    },
)
async def readyz(request: Request) -> Response:
    """Answer whether the database can be used.

    Args:
        request: The request, whose app holds the store.

    Returns:
        ``200 {"status": "ok"}``, or ``503 {"status": "unavailable"}``.
    """
    state = service_state_of(request.app)
    try:
        await asyncio.wait_for(state.store.ping(), timeout=state.ping_timeout_seconds)
    except (StoreUnavailableError, TimeoutError) as error:
        _logger.warning("not ready: %s", str(error) or "the database did not answer in time")
        return JSONResponse({"status": "unavailable"}, status_code=HTTPStatus.SERVICE_UNAVAILABLE)
    return JSONResponse({"status": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Render the app's metrics in the Prometheus text format.

    Args:
        request: The request, whose app holds the metrics.

    Returns:
        The metrics.
    """
    return service_state_of(request.app).metrics.response()


ANSWERED_ERRORS: tuple[type[Exception], ...] = (RequestValidationError, StarletteHTTPException)
"""The errors the framework raises that :func:`error_answer` answers, each with its ``code``."""

# The codes of the errors the framework raises itself: no route, no such method,
# or (any other status) a body it could not parse.
_FRAMEWORK_CODES: dict[int, ErrorCode] = {
    HTTPStatus.NOT_FOUND: ErrorCode.NOT_FOUND,
    HTTPStatus.METHOD_NOT_ALLOWED: ErrorCode.METHOD_NOT_ALLOWED,
}


async def error_answer(_: Request, error: Exception) -> JSONResponse:
    """Answer ``error`` (one of :data:`ANSWERED_ERRORS`) with its status, ``detail`` and ``code``.

    A malformed request is answered ``422`` like FastAPI does, naming each
    refused field without echoing the input, which may hold a password.

    Raises:
        TypeError: If ``error`` is of no kind answered here.
    """
    match error:
        case RequestValidationError():
            detail = [
                {
                    "loc": list(item.get("loc", ())),
                    "msg": item.get("msg", ""),
                    "type": item.get("type"),
                }
                for item in error.errors()
            ]
            return JSONResponse(
                {"detail": detail, "code": ErrorCode.INVALID_REQUEST},
                status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
            )
        case StarletteHTTPException(status_code=HTTPStatus.BAD_REQUEST):
            # FastAPI's answer to a body it could not read as JSON: 422, as documented.
            return JSONResponse(
                {"detail": [unreadable_body_problem()], "code": ErrorCode.INVALID_REQUEST},
                status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
            )
        case StarletteHTTPException(status_code=status_code, detail=detail, headers=headers):
            code = _FRAMEWORK_CODES.get(status_code, ErrorCode.INVALID_REQUEST)
            return JSONResponse(
                {"detail": detail, "code": code}, status_code=status_code, headers=headers
            )
    msg = f"no answer for {type(error).__name__}"
    raise TypeError(msg)
