"""The HTTP endpoints of user-service."""

from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse

from user_service.auth_client import (
    AuthServiceBadResponseError,
    AuthServiceError,
    AuthServiceTimeoutError,
    AuthServiceUnavailableError,
)
from user_service.models import CreateAccountRequest, CreateAccountResponse, ErrorResponse
from user_service.state import ServiceState

if TYPE_CHECKING:
    from fastapi.exceptions import RequestValidationError

RETRY_AFTER_SECONDS = 5

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


def service_state(request: Request) -> ServiceState:
    """Return the collaborators of the app serving ``request``."""
    return service_state_of(request.app)


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    responses={
        code: {"model": ErrorResponse}
        for code in (401, *(code for code, _ in _UPSTREAM_FAILURES.values()))
    },
)
async def create_account(
    payload: CreateAccountRequest,
    state: Annotated[ServiceState, Depends(service_state)],
) -> CreateAccountResponse:
    """Create an account after validating credentials with auth-service.

    Args:
        payload: Account request payload.
        state: The collaborators to use.

    Returns:
        Created account response.

    Raises:
        HTTPException: If credentials are invalid.
    """
    if not await state.auth_verifier.validate_credentials(payload.username, payload.password):
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="Invalid credentials")
    account = state.account_store.create(payload.username)
    return CreateAccountResponse(id=account.id, username=account.username)


@router.get("/livez")
async def livez() -> dict[str, str]:
    """Answer while the process is up."""
    return {"status": "ok"}


async def upstream_failure(_: Request, error: Exception) -> JSONResponse:
    """Answer a failed call to auth-service with 502, 503 or 504, never 500 or 401."""
    status_code, detail = next(
        (failure for kind, failure in _UPSTREAM_FAILURES.items() if isinstance(error, kind)),
        _UPSTREAM_FAILURES[AuthServiceBadResponseError],
    )
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status_code == 503 else None  # noqa: PLR2004
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


async def invalid_request(_: Request, error: Exception) -> JSONResponse:
    """Answer a malformed body with 422, naming each field but never echoing its value."""
    errors = cast("RequestValidationError", error).errors()
    detail: list[dict[str, Any]] = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in errors
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
