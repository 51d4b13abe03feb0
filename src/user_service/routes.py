"""The HTTP endpoints of user-service."""

import asyncio
import hashlib
import logging
import re
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator

from servicekit.disconnects import watching_for_disconnect
from servicekit.middleware import add_log_fields
from user_service.accounts import (
    Claimed,
    Completed,
    IdempotencyClaim,
    InFlight,
    Mismatch,
    UserAccount,
    UsernameTakenError,
)
from user_service.auth_client import (
    AuthServiceBadResponseError,
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
    ErrorResponse,
)
from user_service.state import ServiceState

if TYPE_CHECKING:
    from fastapi.exceptions import RequestValidationError

RETRY_AFTER_SECONDS = 5
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_logger = logging.getLogger("user_service")

_UPSTREAM_FAILURES: dict[type[AuthServiceError], tuple[int, str]] = {
    AuthServiceUnavailableError: (
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "auth-service is unavailable; no account was created. Try again shortly.",
    ),
    AuthServiceTimeoutError: (
        status.HTTP_504_GATEWAY_TIMEOUT,
        "auth-service did not answer in time; no account was created. Try again shortly.",
    ),
    AuthServiceBadResponseError: (
        status.HTTP_502_BAD_GATEWAY,
        "auth-service gave an unusable answer; no account was created.",
    ),
}

router = APIRouter()


def service_state_of(app: FastAPI) -> ServiceState:
    """Return the collaborators of ``app``."""
    return cast("ServiceState", app.state.service)


# The dependencies are coroutines: FastAPI runs a plain function in its thread
# pool, a hop that cost more than the rest of the request.
async def service_state(request: Request) -> ServiceState:
    """Return the collaborators of the app serving ``request``."""
    return service_state_of(request.app)


def _check_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        msg = "must be 1 to 255 visible ASCII characters"
        raise ValueError(msg)
    return key


def idempotency_claim(key: str, username: str) -> IdempotencyClaim:
    """Return the claim a request for ``username`` makes on ``key``.

    The fingerprint covers the canonical username only: a digest of the
    password would be a weak password hash, kept by a service that owns no
    passwords.
    """
    return IdempotencyClaim(key, hashlib.sha256(username.encode()).hexdigest())


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    responses=_error_responses(401, 409, 413, 429, 502, 503, 504),
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
    # The collaborators are read here rather than through a dependency: on this
    # hot path, each dependency FastAPI solves costs as much as a database write.
    async with watching_for_disconnect(request.receive) as gone:
        account, replayed = await register(service_state_of(request.app), payload, key, gone=gone)
    add_log_fields(request.scope, account_id=account.id, replayed=replayed)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CreateAccountResponse(id=account.id, username=account.username)


async def register(
    state: ServiceState,
    payload: CreateAccountRequest,
    key: str | None = None,
    *,
    gone: asyncio.Future[None] | None = None,
) -> tuple[UserAccount, bool]:
    """Create an account after validating credentials, honouring an idempotency key.

    Args:
        state: The collaborators to use.
        payload: The request, with its username canonical.
        key: The request's ``Idempotency-Key``, if any.
        gone: Completes when the client has gone away; the credential check
            is then given up, so auth-service hashes nothing for it.

    Returns:
        The account, and whether it was created by an earlier request with ``key``.

    Raises:
        HTTPException: If credentials are invalid (401), the username is taken
            or the key is in use by an unfinished request (409), or the key was
            used with another username (422).
        ClientGoneError: If the client went away during the credential check.
    """
    store = state.account_store
    claim = None
    if key is not None:
        claim = idempotency_claim(key, payload.username)
        match await store.claim(claim):
            case Completed(account):
                return account, True
            case InFlight():
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    "A request with this Idempotency-Key is still in progress; retry later.",
                )
            case Mismatch():
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    "This Idempotency-Key was used with a different request body.",
                )
            case Claimed():
                pass
    try:
        account = await _verify_then_create(state, payload, claim, gone)
    except BaseException:
        if claim is not None:
            await store.release(claim)
        raise
    return account, False


class ClientGoneError(Exception):
    """The client went away before its credentials were checked; nothing was created."""


async def _verify_then_create(
    state: ServiceState,
    payload: CreateAccountRequest,
    claim: IdempotencyClaim | None,
    gone: asyncio.Future[None] | None,
) -> UserAccount:
    check = state.auth_verifier.validate_credentials(payload.username, payload.password)
    if gone is None:
        valid = await check
    else:
        verdict = asyncio.ensure_future(check)
        watched: set[asyncio.Future[Any]] = {verdict, gone}
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if not verdict.done():
            verdict.cancel()
            raise ClientGoneError
        valid = verdict.result()
    if not valid:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid credentials")
    try:
        return await state.account_store.create(payload.username, idempotency=claim)
    except UsernameTakenError:
        raise HTTPException(status.HTTP_409_CONFLICT, "Username already taken") from None


@router.get(
    "/accounts/{account_id}",
    responses=_error_responses(404),
)
async def get_account(
    account_id: int, state: Annotated[ServiceState, Depends(service_state)]
) -> AccountResponse:
    """Return an account.

    Raises:
        HTTPException: 404 if there is no such account.
    """
    account = await state.account_store.get(account_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Account not found")
    return AccountResponse(id=account.id, username=account.username, created_at=account.created_at)


@router.get("/livez")
async def livez() -> dict[str, str]:
    """Answer while the process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=_error_responses(503))
async def readyz(state: Annotated[ServiceState, Depends(service_state)]) -> dict[str, str]:
    """Answer 200 while the account database can be reached, else 503.

    Raises:
        HTTPException: 503 if the database cannot be reached.
    """
    try:
        await state.account_store.ping()
    except Exception as error:
        _logger.warning("account database unreachable", exc_info=error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "The account database is unreachable."
        ) from None
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics(state: Annotated[ServiceState, Depends(service_state)]) -> Response:
    """Render the metrics in the Prometheus text format."""
    return state.metrics.response()


async def upstream_failure(_: Request, error: Exception) -> JSONResponse:
    """Answer a failed call to auth-service with 429, 502, 503 or 504, never 500 or 401.

    Overload, auth-service's or on the way to it, is a 503 with the
    ``Retry-After`` auth-service gave and ``"code": "overloaded"``.
    """
    if isinstance(error, AuthServiceOverloadedError):
        return JSONResponse(
            {
                "detail": "Sign-up is busy; no account was created. "
                f"Try again in {error.retry_after} s.",
                "code": "overloaded",
            },
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, AuthServiceRateLimitedError):
        return JSONResponse(
            {"detail": "Too many failed attempts for this account; try again later."},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(error.retry_after)},
        )
    status_code, detail = next(
        (failure for kind, failure in _UPSTREAM_FAILURES.items() if isinstance(error, kind)),
        _UPSTREAM_FAILURES[AuthServiceBadResponseError],
    )
    headers = (
        {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if status_code == status.HTTP_503_SERVICE_UNAVAILABLE
        else None
    )
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


CLIENT_CLOSED_REQUEST = 499
"""The status logged for a request whose client went away first (nobody receives it)."""


async def client_gone(_: Request, error: Exception) -> JSONResponse:
    """Close a request whose client went away during the credential check; log it as 499."""
    del error
    return JSONResponse({"detail": "The client went away."}, status_code=CLIENT_CLOSED_REQUEST)


async def store_unavailable(_: Request, error: Exception) -> JSONResponse:
    """Answer 503 when the account database cannot be reached."""
    _logger.error("account database unavailable", exc_info=error)
    return JSONResponse(
        {"detail": "The account database is unavailable; try again shortly."},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def invalid_request(_: Request, error: Exception) -> JSONResponse:
    """Answer a malformed request with 422, naming each field but never echoing its value."""
    errors = cast("RequestValidationError", error).errors()
    detail: list[dict[str, Any]] = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in errors
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
