"""The HTTP API of auth-service.

- ``POST /auth/validate``: ``200 {"valid": bool, "subject": canonical username}``;
  ``422`` for a malformed body or an invalid username; ``429`` with
  ``Retry-After`` while the account is locked; ``503`` with ``Retry-After``
  and ``"code": "overloaded"`` when the hash pool cannot check in time (before
  the body is read, when it is full), and ``503`` when the database fails.
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
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge
from pydantic import AfterValidator, BaseModel, Field

from auth_service.authenticator import MIN_RETRY_AFTER_SECONDS, Authenticator, Outcome
from auth_service.hash_pool import HashPool
from auth_service.lockout import LockoutPolicy
from auth_service.passwords import MAX_PASSWORD_LENGTH, PasswordHashing
from auth_service.settings import Settings
from auth_service.store import CredentialStore, StoreUnavailableError, store_from_settings
from servicekit.deadlines import deadline
from servicekit.disconnects import watching_for_disconnect
from servicekit.metrics import NATIVE_TELEMETRY_OFF, Metrics
from servicekit.middleware import ServiceMiddleware, add_log_fields
from servicekit.retry_after import retry_after_value
from usernames import InvalidUsernameError, canonical_username

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from prometheus_client import CollectorRegistry
    from starlette.responses import Response
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 16 * 1024
"""The largest request body: room for 1,024 astral characters escaped as JSON, and a username."""

VALIDATE = "/auth/validate"
"""The path of the credential check."""

UNAVAILABLE = "unavailable"
"""The validation outcome counted when the database failed."""

_logger = logging.getLogger("auth_service.validations")


def _canonical(username: str) -> str:
    try:
        return canonical_username(username)
    except InvalidUsernameError as error:
        msg = f"the username {error}"
        raise ValueError(msg) from None


class Credentials(BaseModel):
    """A username and password to check.

    Attributes:
        username: Canonicalised on arrival (PRECIS UsernameCaseMapped).
        password: At most ``MAX_PASSWORD_LENGTH`` characters, never cut;
            normalised (OpaqueString) when checked.
    """

    username: Annotated[str, AfterValidator(_canonical)]
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH, repr=False)]


class ValidationAnswer(BaseModel):
    """Whether the credentials are valid, and for whom.

    Attributes:
        valid: Whether the password is the user's. ``false`` alike for an
            unknown user, a wrong password and a password that cannot be
            normalised.
        subject: The canonical username.
    """

    valid: bool
    subject: str


class Problem(BaseModel):
    """Why a request was not answered.

    Attributes:
        detail: For a person to read.
        code: For a program to read, when the status alone does not say it:
            ``overloaded`` for a ``503`` that ``Retry-After`` will cure.
    """

    detail: str
    code: str | None = None


class Health(BaseModel):
    """The answer of ``/livez`` and ``/readyz``.

    Attributes:
        status: ``ok``, or ``unavailable`` when not ready.
    """

    status: Literal["ok", "unavailable"]


class AuthMetrics:
    """The metrics of auth-service beyond those of every request.

    Attributes:
        validations: Validations, by outcome: valid, invalid, locked,
            overloaded, unavailable.
        argon2_operations: argon2id computations, by operation: hash, verify.
        pending_hashes: Password checks running or waiting.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create the metrics in ``registry``; ``pending_hashes`` is for the pool to report to."""
        self.validations = Counter(
            "auth_validations",
            "Credential validations, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in (*Outcome, UNAVAILABLE):
            self.validations.labels(outcome)
        self.argon2_operations = Counter(
            "auth_argon2_operations",
            "argon2id computations, by operation.",
            ["operation"],
            registry=registry,
        )
        for operation in ("hash", "verify"):
            self.argon2_operations.labels(operation)
        self.pending_hashes = Gauge(
            "auth_pending_hashes", "Password checks running or waiting.", registry=registry
        )

    def count_argon2(self, operation: str) -> None:
        """Count one argon2id computation; safe from any thread."""
        self.argon2_operations.labels(operation).inc()


@dataclass(frozen=True, slots=True)
class _Service:
    authenticator: Authenticator
    store: CredentialStore
    metrics: Metrics
    auth_metrics: AuthMetrics
    ping_timeout_seconds: float


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
        The application, ready for an ASGI server.
    """
    resolved = settings if settings is not None else Settings()
    store = credential_store if credential_store is not None else store_from_settings(resolved)
    metrics = Metrics()
    auth_metrics = AuthMetrics(metrics.registry)
    hashing = PasswordHashing(resolved, on_operation=auth_metrics.count_argon2)
    pool = HashPool(
        hashing,
        workers=resolved.hash_workers,
        max_pending=resolved.max_pending_hashes,
        target_delay=resolved.target_queue_delay_seconds,
    )
    auth_metrics.pending_hashes.set_function(lambda: pool.pending)
    service = _Service(
        authenticator=Authenticator(store, pool, LockoutPolicy.from_settings(resolved)),
        store=store,
        metrics=metrics,
        auth_metrics=auth_metrics,
        ping_timeout_seconds=resolved.database_timeout_seconds,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with store:
            await pool.open()
            try:
                yield
            finally:
                await asyncio.to_thread(pool.close)

    app = FastAPI(
        title="auth-service",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.service = service
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_api_route(
        VALIDATE,
        validate,
        methods=["POST"],
        response_model=ValidationAnswer,
        responses={
            HTTPStatus.TOO_MANY_REQUESTS: {"model": Problem},
            HTTPStatus.SERVICE_UNAVAILABLE: {"model": Problem},
        },
    )
    app.add_api_route("/livez", livez, methods=["GET"])
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Health,
        responses={HTTPStatus.SERVICE_UNAVAILABLE: {"model": Health}},
    )
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    validate_route = next(route for route in app.routes if getattr(route, "path", "") == VALIDATE)
    app.add_middleware(ShedWhenFull, pool=pool, route=validate_route, auth_metrics=auth_metrics)
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=MAX_BODY_BYTES)
    return app


def overloaded(retry_after: float) -> JSONResponse:
    """Return the answer to a check that cannot be made in time: ``503`` with ``Retry-After``.

    Args:
        retry_after: Seconds after which a check is likely to be admitted.
    """
    return JSONResponse(
        {"detail": "Too many password checks are pending; try again later.", "code": "overloaded"},
        status_code=HTTPStatus.SERVICE_UNAVAILABLE,
        headers={"Retry-After": retry_after_value(max(MIN_RETRY_AFTER_SECONDS, retry_after))},
    )


class ShedWhenFull:
    """Answers a validation the hash pool would refuse now with ``503``, before reading its body.

    Overload must cost the cores that hash as little as can be: a refused
    request is answered here, its body neither read nor parsed. A request let
    through may still be refused by the pool itself, which decides for good.
    """

    def __init__(
        self, app: ASGIApp, *, pool: HashPool, route: BaseRoute, auth_metrics: AuthMetrics
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            pool: The hash pool whose admission is asked.
            route: The route of ``POST /auth/validate``, named in the request's log line.
            auth_metrics: Where the refusals are counted, as ``overloaded`` validations.
        """
        self._app = app
        self._pool = pool
        self._route = route
        self._auth_metrics = auth_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection scope."""
        if scope["type"] == "http" and scope["path"] == VALIDATE and scope["method"] == "POST":
            refusal = self._pool.refusal(deadline.get())
            if refusal is not None:
                scope["route"] = self._route
                add_log_fields(scope, outcome=Outcome.OVERLOADED)
                self._auth_metrics.validations.labels(Outcome.OVERLOADED).inc()
                await overloaded(refusal.retry_after)(scope, receive, send)
                return
        await self._app(scope, receive, send)


def hash_pool_of(app: FastAPI) -> HashPool:
    """Return the hash pool of an app built by :func:`create_app`.

    Args:
        app: The application.
    """
    return app.state.service.authenticator.pool  # type: ignore[no-any-return]


def _service(request: Request) -> _Service:
    service: _Service = request.app.state.service
    return service


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
    service = _service(request)
    username = credentials.username
    try:
        async with watching_for_disconnect(request.receive) as gone:
            validation = await service.authenticator.validate(
                username, credentials.password, deadline=deadline.get(), gone=gone
            )
    except StoreUnavailableError as error:
        _record(service, username, UNAVAILABLE, logging.ERROR, reason=str(error))
        return JSONResponse(
            {"detail": "The credential store is unavailable; try again later."},
            status_code=HTTPStatus.SERVICE_UNAVAILABLE,
        )
    outcome = validation.outcome
    if outcome in {Outcome.VALID, Outcome.INVALID}:
        _record(service, username, outcome, logging.INFO)
        return JSONResponse({"valid": outcome is Outcome.VALID, "subject": username})
    _record(service, username, outcome, logging.WARNING)
    if outcome is Outcome.LOCKED:
        return JSONResponse(
            {"detail": "Too many failed attempts for this account; try again later."},
            status_code=HTTPStatus.TOO_MANY_REQUESTS,
            headers={"Retry-After": retry_after_value(validation.retry_after or 0)},
        )
    return overloaded(validation.retry_after or 0)


def _record(service: _Service, username: str, outcome: str, level: int, **details: str) -> None:
    service.auth_metrics.validations.labels(outcome).inc()
    _logger.log(
        level,
        "validation %s",
        outcome,
        extra={"username": username, "outcome": outcome, **details},
    )


async def livez() -> Health:
    """Answer that the process is alive.

    Returns:
        ``{"status": "ok"}``.
    """
    return Health(status="ok")


async def readyz(request: Request) -> Response:
    """Answer whether the database can be used.

    Args:
        request: The request, whose app holds the store.

    Returns:
        ``200 {"status": "ok"}``, or ``503 {"status": "unavailable"}``.
    """
    service = _service(request)
    try:
        await asyncio.wait_for(service.store.ping(), timeout=service.ping_timeout_seconds)
    except (StoreUnavailableError, TimeoutError) as error:
        _logger.warning("not ready: %s", str(error) or "the database did not answer in time")
        return JSONResponse({"status": "unavailable"}, status_code=HTTPStatus.SERVICE_UNAVAILABLE)
    return JSONResponse({"status": "ok"})


async def metrics_endpoint(request: Request) -> Response:
    """Render the app's metrics in the Prometheus text format.

    Args:
        request: The request, whose app holds the metrics.

    Returns:
        The metrics.
    """
    return _service(request).metrics.response()


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """Answer 422 like FastAPI does, without echoing the input, which may hold a password."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in errors
    ]
    return JSONResponse({"detail": detail}, status_code=HTTPStatus.UNPROCESSABLE_ENTITY)
