"""user-service: creates accounts once auth-service has validated the credentials.

It is the provider of ``POST /accounts`` (consumed by frontend-web) and the
consumer of auth-service's ``POST /auth/validate``.

The names documented by the pact-python example this service grew from are
all here. ``app``, ``SERVICE_STATE`` and ``ACCOUNT_STORE`` belong to a default
app that :func:`user_service.factory.create_app` builds on first access, not at
import; :func:`set_auth_verifier` and :func:`reset_state` reconfigure it
in-process, which is how provider-state handlers set up each interaction.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import HTTPException

from user_service import registration, routes
from user_service.accounts import AccountStore, InMemoryAccountStore, UserAccount
from user_service.auth_client import AuthClient, CredentialsVerifier
from user_service.factory import create_app
from user_service.models import CreateAccountRequest, CreateAccountResponse
from user_service.state import ServiceState, service_state_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    app: FastAPI
    SERVICE_STATE: ServiceState
    ACCOUNT_STORE: AccountStore

__all__ = [
    "ACCOUNT_STORE",
    "SERVICE_STATE",
    "AccountStore",
    "AuthClient",
    "CreateAccountRequest",
    "CreateAccountResponse",
    "CredentialsVerifier",
    "InMemoryAccountStore",
    "ServiceState",
    "UserAccount",
    "app",
    "create_account",
    "create_app",
    "reset_state",
    "set_auth_verifier",
]

_default_app: FastAPI | None = None


def _app() -> FastAPI:
    global _default_app  # noqa: PLW0603
    if _default_app is None:
        _default_app = create_app()
    return _default_app


def _state() -> ServiceState:
    return service_state_of(_app())


def __getattr__(name: str) -> object:
    """Build the default app on first access to ``app``, ``SERVICE_STATE`` or ``ACCOUNT_STORE``."""
    if name == "app":
        return _app()
    if name == "SERVICE_STATE":
        return _state()
    if name == "ACCOUNT_STORE":
        return _state().account_store
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def set_auth_verifier(verifier: CredentialsVerifier) -> None:
    """Replace the auth verifier implementation.

    Args:
        verifier: New verifier implementation.
    """
    _state().auth_verifier = verifier


def reset_state() -> None:
    """Remove every account of the default app.

    It is meant for synchronous callers such as Pact provider-state handlers,
    which run outside any event loop; in a coroutine, ``await
    ACCOUNT_STORE.reset()`` instead.

    Raises:
        RuntimeError: If called from a running event loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_state().account_store.reset())
        return
    msg = "reset_state() cannot run inside an event loop; await ACCOUNT_STORE.reset() instead"
    raise RuntimeError(msg)


async def create_account(payload: CreateAccountRequest) -> CreateAccountResponse:
    """Create an account on the default app after validating credentials with auth-service.

    Args:
        payload: Account request payload.

    Returns:
        Created account response.

    Raises:
        HTTPException: If credentials are invalid (401) or the username is taken (409).
    """
    state = _state()
    try:
        registered = await registration.register(
            state.auth_verifier, state.account_store, payload.username, payload.password
        )
    except (registration.InvalidCredentialsError, registration.UsernameTakenError) as error:
        answer = routes.answer_to(error)
        raise HTTPException(answer.status_code, answer.detail) from None
    account = registered.account
    return CreateAccountResponse(id=account.id, username=account.username)
