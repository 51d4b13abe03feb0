"""The HTTP API of auth-service: ``POST /auth/validate`` and ``GET /livez``."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from auth_service.credentials import MAX_PASSWORD_LENGTH, MAX_USERNAME_LENGTH, CredentialStore
from auth_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Credentials(BaseModel):
    """A username and password to check."""

    username: Annotated[str, Field(min_length=1, max_length=MAX_USERNAME_LENGTH)]
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH, repr=False)]


class Validation(BaseModel):
    """Whether the credentials are valid, and for whom."""

    valid: bool
    subject: str


class Liveness(BaseModel):
    """The answer of a live process."""

    status: Literal["ok"] = "ok"


def create_app(
    settings: Settings | None = None,
    *,
    credential_store: CredentialStore | None = None,
) -> FastAPI:
    """Build the auth-service application.

    The lifespan opens a thread pool of ``settings.hash_workers`` threads that
    runs the password checks off the event loop. If no store is given, it also
    opens one from ``settings`` and closes it at shutdown; a given store stays
    open, as its owner's to close.

    Args:
        settings: The configuration; read from the environment if omitted.
        credential_store: The store to check passwords against.

    Returns:
        The application, ready for an ASGI server.
    """
    resolved = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            store = credential_store
            if store is None:
                opened = await asyncio.to_thread(CredentialStore.from_settings, resolved)
                store = stack.enter_context(opened)
            executor = stack.enter_context(
                ThreadPoolExecutor(
                    max_workers=resolved.hash_workers, thread_name_prefix="auth-service-hash"
                )
            )
            app.state.settings = resolved
            app.state.credential_store = store
            app.state.hash_executor = executor
            yield

    app = FastAPI(title="auth-service", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_api_route("/auth/validate", validate, methods=["POST"])
    app.add_api_route("/livez", livez, methods=["GET"])
    return app


async def validate(credentials: Credentials, request: Request) -> Validation:
    """Check a username and password.

    An unknown user and a wrong password get the same answer.

    Args:
        credentials: The username and password to check.
        request: The request, whose app holds the store and the thread pool.

    Returns:
        ``valid`` and the ``subject`` the credentials name.
    """
    store: CredentialStore = request.app.state.credential_store
    executor: ThreadPoolExecutor = request.app.state.hash_executor
    valid = await asyncio.get_running_loop().run_in_executor(
        executor, store.verify, credentials.username, credentials.password
    )
    return Validation(valid=valid, subject=credentials.username)


async def livez() -> Liveness:
    """Answer that the process is alive.

    Returns:
        ``{"status": "ok"}``.
    """
    return Liveness()


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """Answer 422 like FastAPI does, without echoing the input, which may hold a password."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{key: value for key, value in error.items() if key != "input"} for error in errors]
    return JSONResponse(
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        content=jsonable_encoder({"detail": detail}),
    )
