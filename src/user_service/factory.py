"""The app factory of user-service: the one place where collaborators are wired.

(Named ``factory`` rather than ``app`` because ``user_service.app`` is the
seed's default FastAPI instance.)
"""

from __future__ import annotations

import math
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from fastapi_offline import FastAPIOffline

from servicekit.client_tokens import RequireClientToken
from servicekit.metrics import NATIVE_TELEMETRY_OFF, Metrics
from servicekit.middleware import ServiceMiddleware
from servicekit.openapi import OFFLINE_DOCUMENTATION, document_client_token, documentation_paths
from servicekit.shedding import ShedWhenBusy
from servicekit.upstream import client_ssl_context, require_token
from user_service import routes
from user_service.accounts import AccountStoreUnavailableError
from user_service.auth_client import AuthClient, AuthServiceOverloadedError
from user_service.settings import AUTH_SERVICE, Settings
from user_service.state import ServiceState
from user_service.store_factory import account_store_from_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from user_service.accounts import AccountStore
    from user_service.auth_client import CredentialsVerifier


def create_app(
    settings: Settings | None = None,
    *,
    auth_verifier: CredentialsVerifier | None = None,
    account_store: AccountStore | None = None,
) -> FastAPI:
    """Build a user-service app.

    Nothing is opened here. The app's lifespan opens the account store
    (creating or migrating its schema) and the production
    :class:`AuthClient`'s session, and closes both.

    Args:
        settings: Configuration; read from the environment when omitted.
        auth_verifier: Checks credentials; an :class:`AuthClient` for
            ``settings.auth_url`` when omitted, which sends the client token of
            ``settings.auth_client_token`` and verifies auth-service's certificate
            against ``settings.auth_ca_file`` (the system's trust store when unset).
        account_store: Keeps accounts; the store ``settings.database_url``
            names when omitted.

    Returns:
        The app, with its collaborators in ``app.state.service``.

    Raises:
        MissingClientTokenError: If the production :class:`AuthClient` is to be
            built and no client token is set; the message names
            ``USER_SERVICE_AUTH_TOKEN_FILE`` and ``USER_SERVICE_AUTH_TOKEN``.
    """
    settings = settings or Settings()
    metrics = Metrics()
    auth_client: AuthClient | None = None
    if auth_verifier is None:
        auth_client = auth_verifier = AuthClient(
            settings.auth_url,
            token=require_token(settings.auth_client_token, AUTH_SERVICE),
            ssl_context=client_ssl_context(
                settings.auth_ca_file, setting=AUTH_SERVICE.ca_file_setting
            ),
            connect_timeout=settings.auth_connect_timeout,
            timeout=settings.auth_timeout,
            retries=settings.auth_retries,
            keepalive=settings.auth_keepalive_seconds,
            min_budget=settings.auth_min_budget_seconds,
            max_in_flight=settings.auth_max_in_flight,
            metrics=metrics,
        )
    if account_store is None:
        account_store = account_store_from_settings(settings)
    state = ServiceState(auth_verifier=auth_verifier, account_store=account_store, metrics=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await state.account_store.open()
            stack.push_async_callback(state.account_store.close)
            if auth_client is not None:
                await stack.enter_async_context(auth_client)
            yield

    app = FastAPIOffline(
        title="user-service",
        description="Accounts, created once auth-service has checked the credentials.",
        lifespan=lifespan,
        telemetry=NATIVE_TELEMETRY_OFF,
        **OFFLINE_DOCUMENTATION,
    )
    app.state.service = state
    app.include_router(routes.router)
    document_client_token(app)
    for error in routes.ANSWERED_ERRORS:
        app.add_exception_handler(error, routes.error_answer)
    if auth_client is not None:
        app.add_middleware(
            ShedWhenBusy,
            route=next(r for r in routes.router.routes if getattr(r, "path", "") == "/accounts"),
            refusal=_shed_while_refused(auth_client, state),
            answer=lambda seconds: routes.answer_to(
                AuthServiceOverloadedError(math.ceil(seconds))
            ).response(),
        )
    app.add_middleware(
        RequireClientToken,
        registry=account_store.clients,
        realm=routes.REALM,
        open_paths=routes.OPEN_PATHS | documentation_paths(app),
        cache_seconds=settings.client_token_cache_seconds,
        unavailable=AccountStoreUnavailableError,
    )
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app


def _shed_while_refused(auth_client: AuthClient, state: ServiceState) -> Callable[[], float | None]:
    """Return when ``POST /accounts`` is refused before its body is read, and for how long.

    While ``auth_client`` serves the app and would refuse to call auth-service
    (too little of the caller's budget left, or too many calls in flight), the
    request is answered ``503`` at once: refusals then cost next to nothing.
    """

    def refusal() -> float | None:
        if state.auth_verifier is not auth_client:
            return None
        refused = auth_client.refusal()
        return None if refused is None else refused.retry_after

    return refusal
