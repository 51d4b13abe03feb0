"""The pages of frontend-web: the sign-up form, its submission, and the error pages.

- ``GET /``: an empty sign-up form, with a fresh idempotency key and CSRF token.
- ``POST /signup``: checks where the form comes from, counts the attempt
  against the rate limit of its client address (:mod:`frontend_web.rate_limit`),
  checks its CSRF token, then asks user-service (:func:`frontend_web.signup.submit`)
  and shows the outcome.
- ``GET /signup``: back to the form. ``GET /livez``: the process is up.
  ``GET /metrics``: Prometheus metrics.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from frontend_web import pages, rate_limit
from frontend_web.csrf import TOKEN_FIELD, Verdict, cookie_name, is_cross_origin
from frontend_web.security import SECURITY_HEADERS
from frontend_web.signup import (
    EXPIRED_FORM,
    Outcome,
    Problem,
    Submission,
    is_idempotency_key,
    new_idempotency_key,
    submit,
)
from frontend_web.state import ServiceState, service_state_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.responses import HTMLResponse

CROSS_ORIGIN_TITLE = "Form sent from another site"
CROSS_ORIGIN_MESSAGE = (
    "This form was sent from a page on another site, so it was not accepted. "
    "To sign up, use the form on this site."
)
_MAX_FORM_FIELDS = 16
_MAX_LOGGED_ORIGIN = 200
_logger = logging.getLogger("frontend_web")

router = APIRouter(include_in_schema=False)


@router.get("/")
async def form(request: Request) -> HTMLResponse:
    """Show an empty sign-up form.

    Args:
        request: The request being served.

    Returns:
        The page, with a fresh idempotency key and a CSRF token.
    """
    return _form_page(service_state_of(request.app), request)


@router.post("/signup")
async def sign_up(request: Request) -> Response:
    """Check where the form comes from and its CSRF token, then ask user-service.

    Args:
        request: The request being served, its body the form.

    Returns:
        The created account, or the form again with what went wrong; a 403
        page, without reading the body, when another site's page sent it; a
        429 form, without calling user-service, past the rate limit.
    """
    state = service_state_of(request.app)
    if is_cross_origin(
        origin=request.headers.get("origin"),
        fetch_site=request.headers.get("sec-fetch-site"),
        own_origin=_own_origin(state, request),
    ):
        return _cross_origin_page(request)
    refusal = await rate_limit.refusal_of(request)
    try:
        async with request.form(max_files=0, max_fields=_MAX_FORM_FIELDS) as fields:
            submission = Submission.from_form(fields, csrf_field=TOKEN_FIELD)
    except ClientDisconnect:
        # The client has gone (or the body limit cut it off): nobody reads an answer.
        return Response(status_code=HTTPStatus.BAD_REQUEST)
    if refusal is not None:
        return _rate_limited_page(state, request, submission, refusal)
    if (verdict := _verdict(state, request, submission)) is not Verdict.VALID:
        _logger.warning(
            "sign-up refused: %s",
            "the form's CSRF token has expired"
            if verdict is Verdict.EXPIRED
            else "missing or invalid CSRF token",
            extra={"csrf": verdict.value},
        )
        # A stale form was this browser's own: what was typed in it is shown
        # again. Anything else may be another site's, so nothing of it is.
        return _form_page(
            state,
            request,
            status=HTTPStatus.FORBIDDEN,
            username=submission.username if verdict is Verdict.EXPIRED else "",
            problems=(Problem(EXPIRED_FORM),),
        )
    if missing := submission.missing_fields():
        return _form_page(
            state,
            request,
            status=HTTPStatus.UNPROCESSABLE_ENTITY,
            username=submission.username,
            problems=missing,
        )
    outcome = await submit(state.client, submission, retry_delays=state.in_flight_retry_delays)
    return _outcome_page(state, request, submission, outcome)


@router.get("/signup")
async def to_form() -> RedirectResponse:
    """Send a person who reloads or bookmarks the outcome's address to the form."""
    return RedirectResponse("/", status_code=HTTPStatus.SEE_OTHER)


@router.get("/livez")
async def livez() -> dict[str, str]:
    """Report that the process is alive."""
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Render the app's metrics in the Prometheus text format."""
    return service_state_of(request.app).metrics.response()


def _is_https(state: ServiceState, request: Request) -> bool:
    # The scheme of the request: https over TLS, or behind a proxy in
    # FRONTEND_WEB_TRUSTED_PROXIES that sent X-Forwarded-Proto: https.
    return state.public_https or request.scope["scheme"] == "https"


def _own_origin(state: ServiceState, request: Request) -> str:
    scheme = "https" if _is_https(state, request) else request.scope["scheme"]
    return f"{scheme}://{request.headers.get('host', '')}"


def _cookie(state: ServiceState, request: Request) -> str | None:
    return request.cookies.get(cookie_name(https=_is_https(state, request)))


def _verdict(state: ServiceState, request: Request, submission: Submission) -> Verdict:
    if not is_idempotency_key(submission.idempotency_key):
        return Verdict.INVALID
    return state.guard.check(
        _cookie(state, request), submission.idempotency_key, submission.csrf_token
    )


def _cross_origin_page(request: Request) -> HTMLResponse:
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


def _rate_limited_page(
    state: ServiceState, request: Request, submission: Submission, refusal: rate_limit.Refusal
) -> HTMLResponse:
    # Shown again as the busy page shows it when it is this browser's own form:
    # the username and the key, which may be that of an account on its way.
    own = _verdict(state, request, submission) is Verdict.VALID
    return _form_page(
        state,
        request,
        status=HTTPStatus.TOO_MANY_REQUESTS,
        username=submission.username if own else "",
        problems=(Problem(rate_limit.rate_limited(refusal.retry_after)),),
        idempotency_key=submission.idempotency_key if own else None,
        headers={"Retry-After": str(refusal.retry_after)},
    )


def _outcome_page(
    state: ServiceState, request: Request, submission: Submission, outcome: Outcome
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
    return _form_page(
        state,
        request,
        status=outcome.status,
        username=submission.username,
        problems=outcome.problems,
        notice=outcome.notice,
        idempotency_key=submission.idempotency_key if outcome.keep_key else None,
        headers=headers,
    )


def _form_page(  # noqa: PLR0913 - the parts of one page
    state: ServiceState,
    request: Request,
    *,
    status: int = HTTPStatus.OK,
    username: str = "",
    problems: Sequence[Problem] = (),
    notice: str | None = None,
    idempotency_key: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    https = _is_https(state, request)
    cookie = state.guard.cookie_value(_cookie(state, request))
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
        csrf_token=state.guard.token(cookie, key),
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


ANSWERED_ERRORS: tuple[type[Exception], ...] = (StarletteHTTPException, Exception)
"""The errors :func:`error_answer` answers with an HTML page: any error, routing ones included."""

_ERROR_MESSAGES = {
    HTTPStatus.NOT_FOUND: "There is no page at this address.",
    HTTPStatus.METHOD_NOT_ALLOWED: "This page cannot be used that way.",
    HTTPStatus.BAD_REQUEST: "The form could not be read. Please go back and try again.",
}


async def error_answer(_: Request, error: Exception) -> Response:
    """Answer ``error`` (one of :data:`ANSWERED_ERRORS`) with an HTML page instead of JSON.

    An unexpected failure gets a plain page, with no details and no stack
    trace. Starlette serves that one from outside the app's middleware, so the
    security headers are added here; it then re-raises ``error`` for the
    server to log.
    """
    if isinstance(error, StarletteHTTPException):
        status = HTTPStatus(error.status_code)
        return pages.render(
            "error.html",
            status=status,
            headers=error.headers,
            title=status.phrase,
            message=_ERROR_MESSAGES.get(status, "The request could not be served."),
        )
    return pages.render(
        "error.html",
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        headers=SECURITY_HEADERS,
        title="Something went wrong",
        message="Something went wrong on our side. Please try again.",
    )
