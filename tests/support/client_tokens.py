"""Registering a test client with a service's real registry, and the header it calls with."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from tests.support.log_scan import register_secret

if TYPE_CHECKING:
    from servicekit.client_tokens import ClientRegistry


class HoldsClients(Protocol):
    """A store, not open yet, that keeps a service's clients."""

    @property
    def clients(self) -> ClientRegistry: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


def issue_token(store: HoldsClients, client: str) -> str:
    """Open ``store``, make a token for ``client`` in it, close it; return the token.

    Call it outside any event loop, before the app that uses the store starts.
    """

    async def issue() -> str:
        await store.open()
        try:
            return await store.clients.issue(client)
        finally:
            await store.close()

    return register_secret(asyncio.run(issue()))


def bearer(token: str) -> dict[str, str]:
    """Return the header that presents ``token``."""
    return {"Authorization": f"Bearer {token}"}
