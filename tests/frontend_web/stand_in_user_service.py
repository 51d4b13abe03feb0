"""A stand-in for user-service's ``POST /accounts``, on a real socket, answering from a script."""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request

    from tests.support.tls import TestTls


class Gate:
    """Holds the requests answered with it until :meth:`open` is called (at most 30 s)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._is_open = False
        self._arrived = 0
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def wait(self) -> None:
        event = asyncio.Event()
        with self._changed:
            self._arrived += 1
            self._changed.notify_all()
            if self._is_open:
                return
            self._waiting.append((asyncio.get_running_loop(), event))
        await asyncio.wait_for(event.wait(), timeout=30)

    def wait_for_arrivals(self, count: int, timeout: float = 20.0) -> None:
        """Block until ``count`` requests have reached the gate."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: self._arrived >= count, timeout)
        assert arrived, f"{count} requests did not reach the gate within {timeout} s"

    def open(self) -> None:
        """Let every held request, and every later one, be answered."""
        with self._changed:
            self._is_open = True
            waiting, self._waiting = self._waiting, []
        for loop, event in waiting:
            loop.call_soon_threadsafe(event.set)


@dataclass(frozen=True)
class Reply:
    """One answer of the stand-in.

    Attributes:
        status: HTTP status.
        body: Sent as JSON.
        headers: Extra response headers.
        delay: Seconds to wait before answering.
        gate: Answer only once this gate is open.
    """

    status: int
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: Gate | None = None


@dataclass(frozen=True)
class Received:
    """One request the stand-in received."""

    headers: dict[str, str]
    body: object

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header, as sent."""
        return self.headers.get("authorization")

    @property
    def budget_ms(self) -> str | None:
        """The ``X-Time-Budget-Ms`` header, as sent."""
        return self.headers.get("x-time-budget-ms")


def created(account_id: int = 1, username: str = "alice", *, replayed: bool = False) -> Reply:
    """user-service's 201, or its replay for a known ``Idempotency-Key``."""
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    body = {"id": account_id, "username": username, "status": "created"}
    return Reply(201, body, headers)


def detail(status: int, text: object, headers: dict[str, str] | None = None) -> Reply:
    """An error answer ``{"detail": text}``, without a ``code``."""
    return Reply(status, {"detail": text}, headers or {})


def problem(status: int, text: str, code: str, headers: dict[str, str] | None = None) -> Reply:
    """An error answer as user-service gives it: ``{"detail": text, "code": code}``."""
    return Reply(status, {"detail": text, "code": code}, headers or {})


def overloaded(retry_after: str | None = "1") -> Reply:
    """user-service's 503 when it, or auth-service behind it, is overloaded."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return problem(503, "auth-service is overloaded", "overloaded", headers)


IN_PROGRESS_TEXT = "A request with this Idempotency-Key is still in progress; retry later."
TAKEN_TEXT = "Username already taken"
IN_PROGRESS = problem(409, IN_PROGRESS_TEXT, "idempotency_key_in_progress")
TAKEN = problem(409, TAKEN_TEXT, "username_taken")
INVALID = problem(401, "Invalid credentials", "invalid_credentials")
TOKEN_REFUSED = problem(
    401,
    "Unknown client token",
    "invalid_token",
    {"WWW-Authenticate": 'Bearer realm="user-service", error="invalid_token"'},
)
"""user-service's 401 to a request without a registered client's token (it has a challenge)."""


class StandInUserService:
    """Answers each ``POST /accounts`` with the next scripted reply (the last one repeats).

    Every request is recorded, headers and JSON body.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.received: list[Received] = []
        self._replies: list[Reply] = [created()]
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/accounts", self._accounts, methods=["POST"])])

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order, and forget what was received."""
        with self._lock:
            self._replies = list(replies)
            self.received.clear()

    async def _accounts(self, request: Request) -> Response:
        body = json.loads(await request.body())
        with self._lock:
            self.received.append(Received(dict(request.headers), body))
            reply = self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]
        if reply.gate is not None:
            await reply.gate.wait()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return Response(
            json.dumps(reply.body), reply.status, reply.headers, media_type="application/json"
        )


@contextmanager
def running_stand_in(*, tls: TestTls | None = None) -> Iterator[StandInUserService]:
    """Serve a stand-in user-service on a free port, over HTTPS with ``tls``."""
    stand_in = StandInUserService()
    with serve_in_thread(stand_in.app, tls=tls) as base_url:
        stand_in.base_url = base_url
        yield stand_in
