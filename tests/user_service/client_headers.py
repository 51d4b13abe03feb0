"""Calling user-service as a registered client: the header frontend-web sends, for the tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from tests.support.client_tokens import bearer, issue_token
from tests.support.servers import serve_in_thread
from user_service.state import service_state_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

    from tests.support.client_tokens import HoldsClients

CLIENT = "frontend-web"
"""The client the tests call user-service as."""


def caller_headers(store: HoldsClients, client: str = CLIENT) -> dict[str, str]:
    """Register a token for ``client`` in ``store``; return the header that presents it.

    The store is opened and closed again: call it before the app that uses the
    store starts, outside any event loop.
    """
    return bearer(issue_token(store, client))


def app_caller_headers(app: FastAPI, client: str = CLIENT) -> dict[str, str]:
    """Register a token for ``client`` in the account store of ``app``; return its header."""
    return caller_headers(service_state_of(app).account_store, client)


@contextmanager
def served(app: FastAPI) -> Iterator[httpx.Client]:
    """Serve ``app`` on a real socket; yield an HTTP client that calls it as :data:`CLIENT`."""
    headers = app_caller_headers(app)
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(base_url=base_url, headers=headers) as client,
    ):
        yield client
