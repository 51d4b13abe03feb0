"""The frontend-web ASGI application: the sign-up page."""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from frontend_web import pages
from frontend_web.client import FrontendClient
from frontend_web.csrf import TOKEN_FIELD, CsrfGuard, Verdict, cookie_name, is_cross_origin
from frontend_web.security import SECURITY_HEADERS, SecurityHeadersMiddleware
from frontend_web.settings import Settings
from frontend_web.signup import (
    EXPIRED_FORM,
    IN_FLIGHT_RETRY_DELAYS,
    Outcome,
    Problem,
    Submission,
    is_idempotency_key,
    new_idempotency_key,
    submit,
)
from servicekit.metrics import NATIVE_TELEMETRY_OFF, Metrics
from servicekit.middleware import ServiceMiddleware

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from starlette.responses import HTMLResponse

_MAX_FORM_FIELDS = 16
_MAX_LOGGED_ORIGIN = 200
CROSS_ORIGIN_TITLE = "Form sent from another site"
CROSS_ORIGIN_MESSAGE = (
    "This form was sent from a page on another site, so it was not accepted. "
    "To sign up, use the form on this site."
)
_logger = logging.getLogger("frontend_web")


def create_app(
    settings: Settings | None = None,
    *,
    client: FrontendClient | None = None,
    in_flight_retry_delays: Sequence[float] = IN_FLIGHT_RETRY_DELAYS,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the frontend-web application.

    Args:
        settings: The configuration; read from the environment when omitted.
        client: The user-service client; built from ``settings`` when omitted. Either
            way, the application's lifespan opens it and closes it.
        in_flight_retry_delays: Seconds to wait before each retry of a submission
            while user-service is still running an earlier one with the same
            idempotency key; after the last, the person is told it is being processed.
        clock: The wall clock, in seconds since the epoch, that dates the forms'
            CSRF tokens and tells their age.

    Returns:
        The application, its client stored on ``app.state.client``.
    """
    settings = settings or Settings()
    metrics = Metrics()
    user_service = client or FrontendClient(
        settings.user_service_url,
        timeout=settings.user_service_timeout,
        max_in_flight=settings.user_service_max_in_flight,
        metrics=metrics,
    )
    # Without a configured secret, each app signs with its own: forms rendered by
    # one process are refused by another (see Settings.csrf_secret).
    secret = (
        settings.csrf_secret.get_secret_value().encode()
        if settings.csrf_secret is not None
        else secrets.token_bytes(32)
    )
    guard = CsrfGuard(secret, max_age=settings.csrf_max_age_seconds, clock=clock)
    signup = SignupRoutes(
        user_service, guard, in_flight_retry_delays, public_https=settings.public_https
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await user_service.open()
        app.state.client = user_service
        try:
            yield
        finally:
            await user_service.close()

    app = FastAPI(
        title="frontend-web",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.mount("/static", StaticFiles(packages=[("frontend_web", "static")]), name="static")
    app.add_api_route("/", signup.form, methods=["GET"], include_in_schema=False)
    app.add_api_route("/signup", signup.submit, methods=["POST"], include_in_schema=False)
    app.add_api_route("/signup", _to_form, methods=["GET"], include_in_schema=False)
    app.add_api_route("/livez", _livez, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", metrics.response, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(StarletteHTTPException, _http_error_page)
    app.add_exception_handler(Exception, _server_error_page)
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


class SignupRoutes:
    """The sign-up form and its submission."""

    def __init__(
        self,
        client: FrontendClient,
        guard: CsrfGuard,
        retry_delays: Sequence[float],
        *,
        public_https: bool = False,
    ) -> None:
        """Serve sign-ups through ``client``.

        Args:
            client: The user-service client (opened by the app's lifespan).
            guard: Issues and checks the forms' CSRF tokens.
            retry_delays: Seconds to wait before each retry of a submission whose
                twin is still running.
            public_https: Whether the page's public address is ``https://`` even
                when the request reached frontend-web over plain HTTP.
        """
        self._client = client
        self._guard = guard
        self._retry_delays = tuple(retry_delays)
        self._public_https = public_https

    async def form(self, request: Request) -> HTMLResponse:
        """Show an empty sign-up form.

        Args:
            request: The request being served.

        Returns:
            The page, with a fresh idempotency key and a CSRF token.
        """
        return self._form_page(request)

    async def submit(self, request: Request) -> Response:
        """Check where the form comes from and its CSRF token, then ask user-service.

        Args:
            request: The request being served, its body the form.

        Returns:
            The created account, or the form again with what went wrong; a 403
            page, without reading the body, when another site's page sent it.
        """
        if is_cross_origin(
            origin=request.headers.get("origin"),
            fetch_site=request.headers.get("sec-fetch-site"),
            own_origin=self._own_origin(request),
        ):
            return self._cross_origin_page(request)
        try:
            async with request.form(max_files=0, max_fields=_MAX_FORM_FIELDS) as form:
                submission = Submission.from_form(form, csrf_field=TOKEN_FIELD)
        except ClientDisconnect:
            # The client has gone (or the body limit cut it off): nobody reads an answer.
            return Response(status_code=HTTPStatus.BAD_REQUEST)
        if (verdict := self._verdict(request, submission)) is not Verdict.VALID:
            _logger.warning(
                "sign-up refused: %s",
                "the form's CSRF token has expired"
                if verdict is Verdict.EXPIRED
                else "missing or invalid CSRF token",
                extra={"csrf": verdict.value},
            )
            # A stale form was this browser's own: what was typed in it is shown
            # again. Anything else may be another site's, so nothing of it is.
            return self._form_page(
                request,
                status=HTTPStatus.FORBIDDEN,
                username=submission.username if verdict is Verdict.EXPIRED else "",
                problems=(Problem(EXPIRED_FORM),),
            )
        if missing := submission.missing_fields():
            return self._form_page(
                request,
                status=HTTPStatus.UNPROCESSABLE_ENTITY,
                username=submission.username,
                problems=missing,
            )
        outcome = await submit(self._client, submission, retry_delays=self._retry_delays)
        return self._outcome_page(request, submission, outcome)

    def _is_https(self, request: Request) -> bool:
        # The scheme uvicorn saw: https behind a proxy in FORWARDED_ALLOW_IPS that
        # sent X-Forwarded-Proto: https.
        return self._public_https or request.scope["scheme"] == "https"

    def _own_origin(self, request: Request) -> str:
        scheme = "https" if self._is_https(request) else request.scope["scheme"]
        return f"{scheme}://{request.headers.get('host', '')}"

    def _cookie(self, request: Request) -> str | None:
        return request.cookies.get(cookie_name(https=self._is_https(request)))

    def _verdict(self, request: Request, submission: Submission) -> Verdict:
        if not is_idempotency_key(submission.idempotency_key):
            return Verdict.INVALID
        return self._guard.check(
            self._cookie(request), submission.idempotency_key, submission.csrf_token
        )

    def _cross_origin_page(self, request: Request) -> HTMLResponse:
        origin = request.headers.get("origin")
        _logger.warning(
            "sign-up refused: sent from another site",
            extra={
                "origin": origin[:_MAX_LOGGED_ORIGIN] if origin is not None else None,
                "sec_fetch_site": request.headers.get("sec-fetch-site", "")[:_MAX_LOGGED_ORIGIN],
            },
        )
        return pages.render(
            "error.html",
            status=HTTPStatus.FORBIDDEN,
            headers=pages.NO_STORE,
            title=CROSS_ORIGIN_TITLE,
            message=CROSS_ORIGIN_MESSAGE,
        )

    def _outcome_page(
        self, request: Request, submission: Submission, outcome: Outcome
    ) -> HTMLResponse:
        if outcome.account is not None:
            return pages.render(
                "created.html",
                status=outcome.status,
                headers=pages.NO_STORE,
                account=outcome.account,
            )
        headers = {}
        if outcome.retry_after is not None:
            headers["Retry-After"] = str(outcome.retry_after)
        return self._form_page(
            request,
            status=outcome.status,
            username=submission.username,
            problems=outcome.problems,
            notice=outcome.notice,
            idempotency_key=submission.idempotency_key if outcome.keep_key else None,
            headers=headers,
        )

    def _form_page(  # noqa: PLR0913 - the parts of one page
        self,
        request: Request,
        *,
        status: int = HTTPStatus.OK,
        username: str = "",
        problems: Sequence[Problem] = (),
        notice: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        https = self._is_https(request)
        cookie = self._guard.cookie_value(self._cookie(request))
        key = idempotency_key or new_idempotency_key()
        field_errors: dict[str, list[str]] = {}
        for problem in problems:
            if problem.field is not None:
                field_errors.setdefault(problem.field, []).append(problem.message)
        response = pages.render(
            "signup.html",
            status=status,
            headers={**pages.NO_STORE, **(headers or {})},
            username=username,
            problems=problems,
            field_errors=field_errors,
            notice=notice,
            csrf_field=TOKEN_FIELD,
            csrf_token=self._guard.token(cookie, key),
            idempotency_key=key,
        )
        # No Domain, Path=/ and, over HTTPS, Secure: what the __Host- prefix requires.
        response.set_cookie(
            cookie_name(https=https),
            cookie,
            path="/",
            httponly=True,
            samesite="strict",
            secure=https,
        )
        return response


async def _to_form() -> RedirectResponse:
    """Send a person who reloads or bookmarks the outcome's address to the form."""
    return RedirectResponse("/", status_code=HTTPStatus.SEE_OTHER)


async def _livez() -> dict[str, str]:
    """Report that the process is alive."""
    return {"status": "ok"}


_ERROR_MESSAGES = {
    HTTPStatus.NOT_FOUND: "There is no page at this address.",
    HTTPStatus.METHOD_NOT_ALLOWED: "This page cannot be used that way.",
    HTTPStatus.BAD_REQUEST: "The form could not be read. Please go back and try again.",
}


async def _http_error_page(_: Request, error: Exception) -> Response:
    """Answer a routing or parsing error with an HTML page instead of JSON."""
    if not isinstance(error, StarletteHTTPException):  # pragma: no cover - registered for it
        raise error
    status = HTTPStatus(error.status_code)
    return pages.render(
        "error.html",
        status=status,
        headers=error.headers,
        title=status.phrase,
        message=_ERROR_MESSAGES.get(status, "The request could not be served."),
    )


async def _server_error_page(_: Request, error: Exception) -> Response:  # noqa: ARG001
    """Answer an unexpected failure with a plain page: no details, no stack trace.

    Starlette serves this from outside the app's middleware, so the security
    headers are added here; it then re-raises ``error`` for the server to log.
    """
    return pages.render(
        "error.html",
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        headers=SECURITY_HEADERS,
        title="Something went wrong",
        message="Something went wrong on our side. Please try again.",
    )
