"""Refusing an expensive request before its body is read, while the service is past its limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servicekit.middleware import add_log_fields

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.responses import Response
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Receive, Scope, Send


class ShedWhenBusy:
    """Answers ``POST`` to one route at once while ``refusal()`` says the service is past its limit.

    Overload must cost the cores doing the real work as little as can be: a
    refused request is answered here, its body neither read nor parsed, no
    framework code run. A request let through may still be refused further
    in, where the decision is made for good.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        route: BaseRoute,
        refusal: Callable[[], float | None],
        answer: Callable[[float], Response],
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            route: The route guarded, a ``POST`` route; named in the request's log line.
            refusal: Seconds to advise in ``Retry-After`` if the request must be
                refused now, else ``None``.
            answer: The answer to a refused request, given those seconds.
        """
        self._app = app
        self._route = route
        self._path: str = getattr(route, "path", "")
        self._refusal = refusal
        self._answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection scope."""
        if scope["type"] == "http" and scope["path"] == self._path and scope["method"] == "POST":
            retry_after = self._refusal()
            if retry_after is not None:
                scope["route"] = self._route
                add_log_fields(scope, shed=True)
                await self._answer(retry_after)(scope, receive, send)
                return
        await self._app(scope, receive, send)
