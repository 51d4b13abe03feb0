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


@dataclass(frozen=True)
class Reply:
    """One answer of the stand-in.

    Attributes:
        status: HTTP status.
        body: Sent as JSON.
        headers: Extra response headers.
        delay: Seconds to wait before answering.
    """

    status: int
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request the stand-in received."""

    headers: dict[str, str]
    body: object

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


def created(account_id: int = 1, username: str = "alice", *, replayed: bool = False) -> Reply:
    """user-service's 201, or its replay for a known ``Idempotency-Key``."""
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    body = {"id": account_id, "username": username, "status": "created"}
    return Reply(201, body, headers)


def detail(status: int, text: object, headers: dict[str, str] | None = None) -> Reply:
    """An error answer ``{"detail": text}``."""
    return Reply(status, {"detail": text}, headers or {})


IN_PROGRESS = detail(409, "A request with this Idempotency-Key is still in progress; retry later.")
TAKEN = detail(409, "Username already taken")
INVALID = detail(401, "Invalid credentials")


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
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return Response(
            json.dumps(reply.body), reply.status, reply.headers, media_type="application/json"
        )


@contextmanager
def running_stand_in() -> Iterator[StandInUserService]:
    """Serve a stand-in user-service on a free port."""
    stand_in = StandInUserService()
    with serve_in_thread(stand_in.app) as base_url:
        stand_in.base_url = base_url
        yield stand_in
