"""Noticing that the client of a request has gone, so no work is spent on its answer."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Receive


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the ASGI server reports that the client has disconnected.

    Call it after the request body has been read: what ``receive`` gives then
    is the disconnect, or the end of the response.

    Args:
        receive: The request's ASGI ``receive``.
    """
    while (await receive())["type"] != "http.disconnect":
        pass


@asynccontextmanager
async def watching_for_disconnect(receive: Receive) -> AsyncIterator[asyncio.Future[None]]:
    """Watch, for the length of the block, whether the client disconnects.

    Args:
        receive: The request's ASGI ``receive``, its body read already.

    Yields:
        A future that completes when the client has disconnected.
    """
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        yield watcher
    finally:
        watcher.cancel()
