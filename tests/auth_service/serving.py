"""Serving the real app on a real socket, and reading its metrics, for the tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

from auth_service.admin import UserAdmin
from auth_service.factory import create_app
from auth_service.store import store_from_settings
from tests.support.client_tokens import bearer, issue_token
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from auth_service.settings import Settings


def add_user(settings: Settings, username: str, password: str) -> None:
    with UserAdmin(settings) as admin:
        admin.add(username, password)


CLIENT = "user-service"
"""The client the tests call auth-service as."""


def client_token(settings: Settings) -> str:
    """Register a token for :data:`CLIENT` in the database of ``settings``; return it."""
    return issue_token(store_from_settings(settings), CLIENT)


@contextmanager
def served(settings: Settings) -> Iterator[tuple[str, dict[str, str]]]:
    """Serve ``create_app(settings)`` with uvicorn; yield its URL and a client's headers."""
    headers = bearer(client_token(settings))
    with serve_in_thread(create_app(settings)) as base_url:
        yield base_url, headers


@contextmanager
def serving(settings: Settings) -> Iterator[httpx.Client]:
    """Serve ``create_app(settings)`` with uvicorn; yield a registered client's HTTP client."""
    with (
        served(settings) as (base_url, headers),
        httpx.Client(base_url=base_url, headers=headers, timeout=30) as client,
    ):
        yield client


def validate(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/auth/validate", json={"username": username, "password": password})


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """Return the value of the sample ``name`` with ``labels`` from ``/metrics``."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    msg = f"no sample {name}{labels} in /metrics"
    raise AssertionError(msg)
