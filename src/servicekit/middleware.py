"""The ASGI middleware every service runs behind: request ids, body limit, one log line, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING

from servicekit.deadlines import deadline, deadline_in
from servicekit.logs import request_id

if TYPE_CHECKING:
    from collections.abc import Mapping

    from prometheus_client import Counter, Histogram
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from servicekit.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
"""A request id that a caller may send, and that is kept (and returned)."""
_VALID_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
SHUTTING_DOWN = "shutting_down"
"""The ``code`` of the ``503`` answered to a request cut short by the server's shutdown."""
LOG_FIELDS_KEY = "servicekit.log_fields"
_logger = logging.getLogger("servicekit.requests")


def json_answer(
    status: int, body: object, headers: Mapping[str, str] | None = None
) -> tuple[Message, Message]:
    """Return the two ASGI messages of a JSON answer.

    Args:
        status: Its status.
        body: What to send, as JSON.
        headers: More headers.
    """
    content = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
    raw += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in (headers or {}).items()
    ]
    return (
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": content},
    )


async def _answer_shutdown(send: Send) -> None:
    """Answer a request the server gave up on while shutting down: 503, not uvicorn's bare 500."""
    body = {"detail": "The service is shutting down; try again.", "code": SHUTTING_DOWN}
    for message in json_answer(503, body, {"Retry-After": "1"}):
        await send(message)


def add_log_fields(scope: Scope, **fields: object) -> None:
    """Add fields to the one log line of the request of ``scope``."""
    scope.setdefault(LOG_FIELDS_KEY, {}).update(fields)


def incoming_request_id(scope: Scope) -> str:
    """Return the request id the client sent, if it is well formed, or a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
    return secrets.token_hex(16)


class ServiceMiddleware:
    """Gives each request an id, refuses oversized bodies, and logs and counts every request.

    - The caller's time budget (:data:`servicekit.deadlines.BUDGET_HEADER`), if
      it sent one, becomes :data:`servicekit.deadlines.deadline` for the calls
      the request makes further on.
    - The id comes from ``X-Request-ID`` when well formed (1-128 characters of
      letters, digits and ``._:-``), else a new one is made; it is returned in
      the response and set in :data:`servicekit.logs.request_id` for the logs
      and for calls to other services.
    - A body larger than ``max_body_bytes`` is answered ``413`` before the app
      reads the rest of it.
    - One log line per request, without headers or bodies (which may hold
      secrets), and the request metrics.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            metrics: Where to count requests.
            max_body_bytes: The largest request body accepted.
        """
        self._app = app
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection scope."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        rid = incoming_request_id(scope)
        token = request_id.set(rid)
        deadline_token = deadline.set(deadline_in(scope.get("headers", ())))
        started = time.perf_counter()
        status = 500
        received = 0
        refused = False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if refused:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                message = {**message, "headers": headers}
            await send(message)

        async def refuse() -> None:
            nonlocal refused
            detail = f"The request body is larger than {self._max_body_bytes} bytes."
            start, body = json_answer(413, {"detail": detail, "code": "body_too_large"})
            await send_with_id(start)
            await send_with_id(body)
            refused = True

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self._max_body_bytes:
                if not refused:
                    await refuse()
                # The app stops reading; whatever it answers after this is dropped.
                return {"type": "http.disconnect"}
            return message

        try:
            if self._declared_length(scope) > self._max_body_bytes:
                await refuse()
            else:
                await self._serve(scope, limited_receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            deadline.reset(deadline_token)
            request_id.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; if the server gives up on the request unanswered, answer it 503."""
        answered = False

        async def watched_send(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, watched_send)
        except asyncio.CancelledError:
            # The server is shutting down and cancelled the request: say so honestly.
            if not answered:
                await _answer_shutdown(send)
            raise

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _series_of(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        """Return the request counter and histogram of these labels, looked up once."""
        labels = (method, route, status)
        series = self._series.get(labels)
        if series is None:
            # Routes are templates and methods a few, so there are few series
            # (an unmatched path counts as "<unmatched>").
            series = self._series[labels] = (
                self._metrics.requests.labels(method, route, str(status)),
                self._metrics.request_seconds.labels(method, route),
            )
        return series

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "<unmatched>")
        method = scope["method"]
        requests, durations = self._series_of(method, route, status)
        requests.inc()
        durations.observe(seconds)
        _logger.info(
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "method": method,
                "route": route,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                **scope.get(LOG_FIELDS_KEY, {}),
            },
        )
