"""A fault-injecting stand-in for auth-service's ``POST /auth/validate``, on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from starlette.requests import Request

    from tests.support.tls import TestTls

VALIDATE_PATH = "/auth/validate"

# A stalled answer waits for the caller to hang up, but never longer than this,
# so that shutting the stand-in down cannot hang.
STALL_LIMIT = 5.0


@dataclass(frozen=True)
class Reply:
    """What the stand-in answers.

    Attributes:
        status: HTTP status.
        body: Raw body bytes.
        content_type: ``Content-Type`` of the answer.
        stall: Where the answer stops until the caller has hung up (or for
            ``STALL_LIMIT``): ``"headers"`` before anything is sent, ``"body"``
            after the headers and the first half of the body.
    """

    status: int = 200
    body: bytes = b'{"valid": true}'
    content_type: str = "application/json"
    stall: Literal["headers", "body"] | None = None
    headers: tuple[tuple[str, str], ...] = ()


def verdict(*, valid: bool) -> Reply:
    """A well-formed answer of auth-service."""
    return json_reply({"valid": valid, "subject": "alice"})


def json_reply(body: object, status: int = 200) -> Reply:
    """An answer whose body is ``body`` as JSON."""
    return Reply(status=status, body=json.dumps(body).encode())


def raw_reply(body: bytes, *, status: int = 200, content_type: str = "text/plain") -> Reply:
    """An answer with exactly ``body``."""
    return Reply(status=status, body=body, content_type=content_type)


def token_refused(*, error: str | None = "invalid_token") -> Reply:
    """auth-service's 401 to a request without a registered client's token."""
    challenge = 'Bearer realm="auth-service"' + (f', error="{error}"' if error else "")
    return Reply(
        status=401,
        body=json.dumps({"detail": "Unknown client token", "code": "invalid_token"}).encode(),
        headers=(("WWW-Authenticate", challenge),),
    )


def slow_reply() -> Reply:
    """A verdict that comes too late for any caller with a short timeout."""
    return Reply(stall="headers")


def trickling_reply() -> Reply:
    """A verdict whose headers come at once but whose body stops half-way."""
    return Reply(stall="body")


@dataclass(frozen=True)
class Received:
    """One request the stand-in received."""

    method: str
    path: str
    content_type: str | None
    body: bytes
    request_id: str | None = None
    budget_ms: str | None = None
    authorization: str | None = None

    def json(self) -> object:
        """The body parsed as JSON."""
        return json.loads(self.body)


class StandInAuthService:
    """Answers every ``POST`` with a configurable :class:`Reply` and records what it received.

    It answers on every path, recording it, so tests can check which path a client used.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.reply = verdict(valid=True)
        self.received: list[Received] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._answer, methods=["POST"])])

    def answer(self, reply: Reply) -> None:
        """Answer every following request with ``reply``."""
        self.reply = reply

    def reset(self) -> None:
        """Forget what was received and answer ``{"valid": true}`` again."""
        self.reply = verdict(valid=True)
        self.received.clear()

    async def _answer(self, request: Request) -> Response:
        self.received.append(
            Received(
                method=request.method,
                path=request.url.path,
                content_type=request.headers.get("content-type"),
                body=await request.body(),
                request_id=request.headers.get("x-request-id"),
                budget_ms=request.headers.get("x-time-budget-ms"),
                authorization=request.headers.get("authorization"),
            )
        )
        reply = self.reply
        if reply.stall == "headers":
            await _wait_for_hang_up(request)
        if reply.stall == "body":
            return StreamingResponse(
                _trickle(reply.body, request), reply.status, media_type=reply.content_type
            )
        return Response(
            reply.body, reply.status, headers=dict(reply.headers), media_type=reply.content_type
        )


async def _trickle(body: bytes, request: Request) -> AsyncIterator[bytes]:
    half = len(body) // 2
    yield body[:half]
    await _wait_for_hang_up(request)
    yield body[half:]


async def _wait_for_hang_up(request: Request) -> None:
    """Return once the caller has closed the connection, or after ``STALL_LIMIT``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STALL_LIMIT):
            while (await request.receive())["type"] != "http.disconnect":
                pass


@contextmanager
def serve_stand_in(*, tls: TestTls | None = None) -> Iterator[StandInAuthService]:
    """Serve a new stand-in on a free port, HTTPS with ``tls``; ``base_url`` is set meanwhile."""
    stand_in = StandInAuthService()
    with serve_in_thread(stand_in.app, tls=tls) as base_url:
        stand_in.base_url = base_url
        yield stand_in
