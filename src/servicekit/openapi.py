"""What the OpenAPI documents of the services share.

Both documents describe the same machinery: the client token every protected
operation needs (:class:`servicekit.client_tokens.RequireClientToken`), the
request id and time budget every request may carry and the request id every
answer carries (:class:`servicekit.middleware.ServiceMiddleware`), and the
``Retry-After`` of the answers that say when to try again. The routes of each
service declare their answers with :func:`answer`, the request headers with
:func:`request_headers`, and the token with :data:`client_token`; the app
factories open :func:`documentation_paths` to callers without a token.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from servicekit.deadlines import BUDGET_HEADER, MAX_BUDGET_MS
from servicekit.middleware import REQUEST_ID_HEADER, REQUEST_ID_PATTERN
from usernames import MAX_USERNAME_LENGTH

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fastapi import FastAPI

CLIENT_TOKEN_SCHEME = "clientToken"  # noqa: S105 (a name, not a secret)
"""The name of the client token's security scheme in the documents."""

BUDGET_PATTERN = r"^[0-9]{1,10}$"
"""A time budget that :func:`servicekit.deadlines.parse_budget` reads."""

DOCS_URL = "/docs"
"""Where Swagger UI shows the document."""

REDOC_URL = "/redoc"
"""Where ReDoc shows the document."""

DOCS_ASSETS_URL = "/static-offline-docs"
"""Where the pages' scripts, styles and icon are served from: the service itself, no other host."""

OFFLINE_DOCUMENTATION: dict[str, Any] = {
    "docs_url": DOCS_URL,
    "redoc_url": REDOC_URL,
    "static_url": DOCS_ASSETS_URL,
    "swagger_ui_parameters": {"validatorUrl": None},
}
"""The options of ``fastapi_offline.FastAPIOffline`` for pages that ask no other host for
anything: their assets from :data:`DOCS_ASSETS_URL`, and no call to Swagger's online validator."""

USERNAME_FORMAT = "precis-username-case-mapped"
"""The ``format`` of a username in the documents: RFC 8265's UsernameCaseMapped profile.

No regular expression says exactly which strings the profile accepts (it
depends on Unicode properties and on the bidirectional rule), so the
documents name it, and a generator of test data registers a strategy for it.
"""

USERNAME_DESCRIPTION = (
    "A username as a person typed it, canonicalised on arrival with the PRECIS "
    "UsernameCaseMapped profile of RFC 8265 (`ALICE` and `alice` are one user): letters, "
    "digits and the visible ASCII characters `!` to `~`; no spaces, no other symbols or "
    "punctuation, no control characters. "
    f"1 to {MAX_USERNAME_LENGTH} characters, before and after mapping; any other is "
    "refused with `422` `invalid_request`."
)
"""The username rule (:mod:`usernames`), as both documents describe it."""

RETRY_AFTER = "Retry-After"
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
WWW_AUTHENTICATE = "WWW-Authenticate"

CLIENT_TOKEN_SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "description": (
        "The client token the service issued to the caller (`clients add NAME`), as "
        "`Authorization: Bearer <token>`. Without a token that a registered client holds, "
        "the answer is `401` with `WWW-Authenticate` and `code` `invalid_token`, before the "
        "body is read."
    ),
    "scheme": "bearer",
}
"""The client token's security scheme, as the documents give it.

:class:`~servicekit.client_tokens.RequireClientToken` checks the token before
any route runs, so it is documented here rather than as a FastAPI dependency,
which would cost every request its solving for nothing.
"""


def document_client_token(app: FastAPI) -> None:
    """Add the client token's scheme to the components of ``app``'s document.

    The protected operations name it (``request_headers(protected=True)``).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[CLIENT_TOKEN_SCHEME] = CLIENT_TOKEN_SECURITY_SCHEME
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _header(description: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


def request_id_header() -> dict[str, Any]:
    """Return the ``X-Request-ID`` header of every answer."""
    return _header(
        "The request's id, as logged: the `X-Request-ID` the caller sent if it was well "
        "formed, else a new one.",
        {"type": "string", "pattern": REQUEST_ID_PATTERN},
        required=True,
    )


def retry_after_header(*, required: bool = True) -> dict[str, Any]:
    """Return a ``Retry-After`` header: whole seconds to wait before trying again.

    Args:
        required: Whether every answer of the status sends it.
    """
    description = "Seconds to wait before trying again."
    if not required:
        description += " Sent by the answers whose `code` a retry can cure."
    return _header(description, {"type": "integer", "minimum": 0}, required=required)


def www_authenticate_header(realm: str, *, required: bool = True) -> dict[str, Any]:
    """Return the ``WWW-Authenticate`` header of the answer to a request without a valid token.

    Args:
        realm: The service's name, as :class:`~servicekit.client_tokens.RequireClientToken` has it.
        required: Whether every answer of the status sends it (not when a ``401`` may
            also mean something else).
    """
    description = (
        f'`Bearer realm="{realm}"`, with `error="invalid_token"` when a token was sent '
        "that no registered client holds."
    )
    if not required:
        description += " Sent with `code` `invalid_token` only."
    pattern = f'^Bearer realm="{realm}"(, error="invalid_token")?$'
    return _header(description, {"type": "string", "pattern": pattern}, required=required)


def idempotent_replayed_header() -> dict[str, Any]:
    """Return the ``Idempotent-Replayed`` header of an answer replayed for an idempotency key."""
    return _header(
        "`true` when this is the stored answer to an earlier request with the same "
        "`Idempotency-Key`: no account was created now.",
        {"type": "string", "enum": ["true"]},
        required=False,
    )


def answer(
    description: str,
    model: object = None,
    *,
    headers: Mapping[str, dict[str, Any]] | None = None,
    links: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return an entry of a route's ``responses``: an answer, its body and headers.

    Every answer gets ``X-Request-ID`` besides ``headers``.

    Args:
        description: What the answer means.
        model: The body's model (a union for several bodies); ``None`` for the
            route's own answer, whose model FastAPI knows already.
        headers: More headers, by name.
        links: OpenAPI links to operations the answer leads to, by name.

    Returns:
        The entry.
    """
    entry: dict[str, Any] = {
        "description": description,
        "headers": {REQUEST_ID_HEADER: request_id_header(), **(headers or {})},
    }
    if model is not None:
        entry["model"] = model
    if links:
        entry["links"] = dict(links)
    return entry


def request_headers(*, budget: bool, protected: bool = False) -> dict[str, Any]:
    """Return the ``openapi_extra`` that documents the headers the middleware reads.

    They are read by :class:`~servicekit.middleware.ServiceMiddleware`, not by
    the route, so they are described here rather than as the route's parameters;
    a value that is not well formed is ignored, never refused.

    Args:
        budget: Whether the operation keeps to the caller's time budget
            (``X-Time-Budget-Ms``), for the calls or checks it makes.
        protected: Whether the operation needs the client token
            (:data:`CLIENT_TOKEN_SECURITY_SCHEME`).
    """
    parameters: list[dict[str, Any]] = [
        {
            "name": REQUEST_ID_HEADER,
            "in": "header",
            "required": False,
            "description": (
                "An id for the request, kept in the logs and passed on to the services "
                f"called, when it matches `{REQUEST_ID_PATTERN}` (1 to 128 letters, digits "
                "and `._:-`); any other value is replaced by a new id."
            ),
            "schema": {"type": "string"},
            "example": "signup-7f3a9c",
        },
    ]
    if budget:
        parameters.append(
            {
                "name": BUDGET_HEADER,
                "in": "header",
                "required": False,
                "description": (
                    "The whole milliseconds the caller will still wait for the answer, "
                    f"counted from when it sent the request: ASCII digits (`{BUDGET_PATTERN}`); "
                    f"more than {MAX_BUDGET_MS} is read as {MAX_BUDGET_MS} (an hour), any "
                    "other value is ignored. Work that cannot be done in time is refused "
                    "with `503` `overloaded`."
                ),
                "schema": {"type": "string"},
                "example": "2500",
            }
        )
    extra: dict[str, Any] = {"parameters": parameters}
    if protected:
        extra["security"] = [{CLIENT_TOKEN_SCHEME: []}]
    return extra


def unreadable_body_problem() -> dict[str, Any]:
    """Return the refused part of a request whose body could not be read as JSON text.

    FastAPI answers such a body (one that is not UTF-8, say) ``400``; the
    services answer it ``422`` ``invalid_request`` with this in ``detail``, as
    their documents say, like any other body that is not JSON.
    """
    return {"loc": ["body"], "msg": "The body is not JSON text (UTF-8).", "type": "json_invalid"}


def documentation_paths(app: FastAPI) -> frozenset[str]:
    """Return the paths of the app's OpenAPI document, its pages and their assets.

    They are open to anyone: nothing in them is secret. An asset folder is
    listed file by file, since an open path is matched whole.

    Args:
        app: An app built with ``fastapi_offline.FastAPIOffline`` (or plain FastAPI).
    """
    served = {getattr(route, "path", None) for route in app.routes}
    pages = {
        app.openapi_url,
        app.docs_url,
        app.redoc_url,
        app.swagger_ui_oauth2_redirect_url,
        DOCS_URL,
        REDOC_URL,
    }
    paths = {page for page in pages if page and page in served}
    for route in app.routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            paths.update(
                f"{route.path}/{file.name}"
                for folder in route.app.all_directories
                for file in Path(folder).iterdir()
                if file.is_file()
            )
    return frozenset(paths)
