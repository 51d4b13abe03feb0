"""The app factory of auth-service: the one place where collaborators are wired."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi_offline import FastAPIOffline

from auth_service import routes
from auth_service.authenticator import Authenticator, Outcome
from auth_service.hash_pool import HashPool
from auth_service.lockout import LockoutPolicy
from auth_service.metrics import AuthMetrics
from auth_service.models import MAX_BODY_BYTES
from auth_service.passwords import PasswordHashing
from auth_service.settings import Settings
from auth_service.state import ServiceState
from auth_service.store import StoreUnavailableError, store_from_settings
from servicekit.client_tokens import RequireClientToken
from servicekit.metrics import NATIVE_TELEMETRY_OFF, Metrics
from servicekit.middleware import ServiceMiddleware
from servicekit.openapi import OFFLINE_DOCUMENTATION, document_client_token, documentation_paths
from servicekit.shedding import ShedWhenBusy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import FastAPI

    from auth_service.store import CredentialStore


def create_app(
    settings: Settings | None = None, *, credential_store: CredentialStore | None = None
) -> FastAPI:
    """Build the auth-service application.

    Nothing is opened here. The lifespan opens the store (creating or
    migrating its schema) and the hash pool at start-up, and closes both at
    shutdown.

    Args:
        settings: The configuration; read from the environment if omitted.
        credential_store: A store, not yet opened, to use instead of the one
            ``settings.database_url`` names; the app opens and closes it.

    Returns:
        The application, ready for an ASGI server, with its collaborators in
        ``app.state.service``.
    """
    settings = settings or Settings()
    store = credential_store if credential_store is not None else store_from_settings(settings)
    metrics = Metrics()
    auth_metrics = AuthMetrics(metrics.registry)
    hashing = PasswordHashing(settings, on_operation=auth_metrics.count_argon2)
    pool = HashPool(
        hashing,
        workers=settings.hash_workers,
        max_pending=settings.max_pending_hashes,
        target_delay=settings.target_queue_delay_seconds,
        niceness=settings.hash_niceness,
    )
    auth_metrics.pending_hashes.set_function(lambda: pool.pending)
    state = ServiceState(
        authenticator=Authenticator(store, pool, LockoutPolicy.from_settings(settings)),
        store=store,
        metrics=metrics,
        auth_metrics=auth_metrics,
        ping_timeout_seconds=settings.database_timeout_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with store:
            await pool.open()
            try:
                yield
            finally:
                await asyncio.to_thread(pool.close)

    app = FastAPIOffline(
        title="auth-service",
        description="Checks usernames and passwords for user-service.",
        lifespan=lifespan,
        telemetry=NATIVE_TELEMETRY_OFF,
        **OFFLINE_DOCUMENTATION,
    )
    app.state.service = state
    app.include_router(routes.router)
    document_client_token(app)
    for error in routes.ANSWERED_ERRORS:
        app.add_exception_handler(error, routes.error_answer)
    app.add_middleware(
        ShedWhenBusy,
        route=next(r for r in routes.router.routes if getattr(r, "path", "") == routes.VALIDATE),
        refusal=_shed_while_refused(pool, auth_metrics),
        answer=routes.overloaded,
    )
    app.add_middleware(
        RequireClientToken,
        registry=store.clients,
        realm=routes.REALM,
        open_paths=routes.OPEN_PATHS | documentation_paths(app),
        cache_seconds=settings.client_token_cache_seconds,
        unavailable=StoreUnavailableError,
    )
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=MAX_BODY_BYTES)
    return app


def _shed_while_refused(pool: HashPool, auth_metrics: AuthMetrics) -> Callable[[], float | None]:
    """Return when ``POST /auth/validate`` is refused before its body is read, and for how long.

    While the hash pool could not start a check in time or finish it before
    the caller's deadline, the request is answered ``503`` at once (counted
    as ``overloaded``): refusals then cost the hashing cores next to nothing.
    """

    def refusal() -> float | None:
        refused = pool.refusal(routes.work_deadline())
        if refused is None:
            return None
        auth_metrics.validations.labels(Outcome.OVERLOADED).inc()
        return refused.retry_after

    return refusal
