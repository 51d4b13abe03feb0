"""The app factory of frontend-web: the one place where collaborators are wired."""

from __future__ import annotations

import secrets
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from frontend_web import routes
from frontend_web.client import FrontendClient
from frontend_web.csrf import CsrfGuard
from frontend_web.rate_limit import KEY_PREFIX, RateLimitMetrics, SignUpRateLimiter
from frontend_web.security import SecurityHeadersMiddleware
from frontend_web.settings import USER_SERVICE, Settings
from frontend_web.signup import IN_FLIGHT_RETRY_DELAYS
from frontend_web.state import ServiceState
from servicekit.metrics import NATIVE_TELEMETRY_OFF, Metrics
from servicekit.middleware import ServiceMiddleware
from servicekit.upstream import client_ssl_context, require_token

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence


def create_app(
    settings: Settings | None = None,
    *,
    client: FrontendClient | None = None,
    in_flight_retry_delays: Sequence[float] = IN_FLIGHT_RETRY_DELAYS,
    clock: Callable[[], float] = time.time,
    rate_limit_key_prefix: str = KEY_PREFIX,
) -> FastAPI:
    """Build the frontend-web application.

    Nothing is opened here: the app's lifespan opens the user-service client
    and closes it.

    Args:
        settings: The configuration; read from the environment when omitted.
        client: The user-service client; built from ``settings`` when omitted, sending
            ``settings.user_service_client_token`` and verifying user-service's
            certificate against ``settings.user_service_ca_file`` (the system's
            trust store when unset).
        in_flight_retry_delays: Seconds to wait before each retry of a submission
            while user-service is still running an earlier one with the same
            idempotency key; after the last, the person is told it is being processed.
        clock: The wall clock, in seconds since the epoch, that dates the forms'
            CSRF tokens and tells their age.
        rate_limit_key_prefix: The prefix of the sign-up rate limit's keys in Redis,
            when ``settings.rate_limit_storage`` is Redis.

    Returns:
        The application, with its collaborators in ``app.state.service`` and its
        sign-up rate limiter in ``app.state.rate_limiter``.

    Raises:
        MissingClientTokenError: If the client is to be built from ``settings`` and
            no client token is set; the message names
            ``FRONTEND_WEB_USER_SERVICE_TOKEN_FILE`` and ``FRONTEND_WEB_USER_SERVICE_TOKEN``.
    """
    settings = settings or Settings()
    metrics = Metrics()
    user_service = client or FrontendClient(
        settings.user_service_url,
        token=require_token(settings.user_service_client_token, USER_SERVICE),
        ssl_context=client_ssl_context(
            settings.user_service_ca_file, setting=USER_SERVICE.ca_file_setting
        ),
        timeout=settings.user_service_timeout,
        max_in_flight=settings.user_service_max_in_flight,
        metrics=metrics,
    )
    rate_limiter = SignUpRateLimiter(
        settings.rate_limit,
        settings.rate_limit_storage.get_secret_value(),
        metrics=RateLimitMetrics(metrics.registry),
        key_prefix=rate_limit_key_prefix,
    )
    # Without a configured secret, each app signs with its own: forms rendered by
    # one process are refused by another (see Settings.csrf_secret).
    secret = (
        settings.csrf_secret.get_secret_value().encode()
        if settings.csrf_secret is not None
        else secrets.token_bytes(32)
    )
    state = ServiceState(
        client=user_service,
        guard=CsrfGuard(secret, max_age=settings.csrf_max_age_seconds, clock=clock),
        in_flight_retry_delays=tuple(in_flight_retry_delays),
        public_https=settings.public_https,
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await user_service.open()
        try:
            yield
        finally:
            await user_service.close()
            await rate_limiter.close()

    app = FastAPI(
        title="frontend-web",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.service = state
    app.state.rate_limiter = rate_limiter
    app.mount("/static", StaticFiles(packages=[("frontend_web", "static")]), name="static")
    app.include_router(routes.router)
    for error in routes.ANSWERED_ERRORS:
        app.add_exception_handler(error, routes.error_answer)
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    # Outermost: the client address and scheme from X-Forwarded-* of trusted proxies
    # only, for every layer inside (uvicorn's own handling is off, see servicekit.cli).
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    return app
