"""Another site's page, on a port of its own, whose form posts to frontend-web."""

from __future__ import annotations

import html
from contextlib import contextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from starlette.requests import Request

BUTTON = "Claim your prize"


class OtherSite:
    """Serves one page, whose form posts the given fields to a given address."""

    def __init__(self) -> None:
        self.action = ""
        self.fields: Mapping[str, str] = {}
        self.app = Starlette(routes=[Route("/", self._page)])

    def post_to(self, action: str, fields: Mapping[str, str]) -> None:
        """Make the page's form post ``fields`` to ``action``."""
        self.action = action
        self.fields = dict(fields)

    async def _page(self, _: Request) -> HTMLResponse:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in self.fields.items()
        )
        return HTMLResponse(
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Prizes</title></head>"
            f'<body><form method="post" action="{html.escape(self.action)}">{hidden}'
            f'<button type="submit">{BUTTON}</button></form></body></html>'
        )


@contextmanager
def other_site() -> Iterator[tuple[OtherSite, int]]:
    """Serve an :class:`OtherSite` on a free loopback port.

    Yields:
        The site and its port.
    """
    site = OtherSite()
    with serve_in_thread(site.app) as url:
        yield site, int(url.rsplit(":", 1)[1])
