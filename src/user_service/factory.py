"""The app factory of user-service: the one place where collaborators are wired.

(Named ``factory`` rather than ``app`` because ``user_service.app`` is the
seed's default FastAPI instance.)
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from user_service import routes
from user_service.accounts import InMemoryAccountStore
from user_service.auth_client import AuthClient, AuthServiceError
from user_service.settings import Settings
from user_service.state import ServiceState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from user_service.accounts import AccountStore
    from user_service.auth_client import CredentialsVerifier


def create_app(
    settings: Settings | None = None,
    *,
    auth_verifier: CredentialsVerifier | None = None,
    account_store: AccountStore | None = None,
) -> FastAPI:
    """Build a user-service app.

    Nothing is opened here: the production :class:`AuthClient`'s session is
    opened in the app's lifespan and closed there.

    Args:
        settings: Configuration; read from the environment when omitted.
        auth_verifier: Checks credentials; an :class:`AuthClient` for
            ``settings.auth_url`` when omitted.
        account_store: Keeps accounts; a new :class:`InMemoryAccountStore`
            when omitted.

    Returns:
        The app, with its collaborators in ``app.state.service``.
    """
    settings = settings or Settings()
    auth_client: AuthClient | None = None
    if auth_verifier is None:
        auth_client = auth_verifier = AuthClient(
            settings.auth_url,
            connect_timeout=settings.auth_connect_timeout,
            timeout=settings.auth_timeout,
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if auth_client is None:
            yield
            return
        async with auth_client:
            yield

    app = FastAPI(title="user-service", lifespan=lifespan)
    app.state.service = ServiceState(
        auth_verifier=auth_verifier,
        account_store=InMemoryAccountStore() if account_store is None else account_store,
    )
    app.include_router(routes.router)
    app.add_exception_handler(AuthServiceError, routes.upstream_failure)
    app.add_exception_handler(RequestValidationError, routes.invalid_request)
    return app
