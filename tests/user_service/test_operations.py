"""Operating user-service: health, readiness, metrics, request ids, body limit."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.postgres import drop_schema, new_schema, postgres_url
from tests.support.servers import serve_in_thread
from tests.support.tcp_proxy import TcpProxy
from tests.user_service.client_headers import caller_headers
from tests.user_service.durable_stores import POSTGRES_URL_VARIABLE
from user_service import create_app
from user_service.postgres_store import PostgresAccountStore
from user_service.settings import Settings
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.user_service.stand_in_auth import StandInAuthService

PASSWORD = "pw-operations-5d0e"
ACCOUNT = {"username": "alice", "password": PASSWORD}


@pytest.fixture
def client(tmp_path: Path, stand_in_auth: StandInAuthService) -> Iterator[httpx.Client]:
    settings = Settings(auth_url=stand_in_auth.base_url)
    store = SqliteAccountStore(tmp_path / "accounts.db")
    headers = caller_headers(store)
    app = create_app(settings, account_store=store)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=headers) as client:
        yield client


def test_livez_and_readyz_are_200(client: httpx.Client) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_request_id_sent_by_the_client_is_returned(client: httpx.Client) -> None:
    response = client.post("/accounts", json=ACCOUNT, headers={"X-Request-ID": "req-42.a:b"})
    assert response.headers["X-Request-ID"] == "req-42.a:b"


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "bad id", "\u00e9t\u00e9"])
def test_missing_or_malformed_request_id_is_replaced(
    client: httpx.Client, sent: str | None
) -> None:
    headers = {} if sent is None else {b"X-Request-ID": sent.encode()}
    returned = client.get("/livez", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", returned)


def test_request_id_is_forwarded_to_auth_service(
    client: httpx.Client, stand_in_auth: StandInAuthService
) -> None:
    client.post("/accounts", json=ACCOUNT, headers={"X-Request-ID": "trace-7"})
    assert [received.request_id for received in stand_in_auth.received] == ["trace-7"]


def test_body_over_16_kib_is_413_and_creates_nothing(
    client: httpx.Client, stand_in_auth: StandInAuthService
) -> None:
    response = client.post(
        "/accounts", json={"username": "alice", "password": "p", "padding": "x" * 16384}
    )
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is larger than 16384 bytes.",
        "code": "body_too_large",
    }
    assert stand_in_auth.received == []
    assert client.get("/accounts/1").status_code == 404


def test_streamed_body_over_the_limit_is_413(client: httpx.Client) -> None:
    chunks = (b"x" * 4096 for _ in range(5))
    response = client.post(
        "/accounts", content=chunks, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_metrics_count_requests_by_route_and_status(client: httpx.Client) -> None:
    client.post("/accounts", json=ACCOUNT)
    client.post("/accounts", json=ACCOUNT)
    client.get("/accounts/1")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/accounts",status="201"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/accounts",status="409"} 1.0' in text
    assert (
        'http_requests_total{method="GET",route="/accounts/{account_id}",status="200"} 1.0' in text
    )
    assert 'http_request_duration_seconds_count{method="POST",route="/accounts"} 2.0' in text


def test_metrics_count_calls_to_auth_service(client: httpx.Client) -> None:
    client.post("/accounts", json=ACCOUNT)
    text = client.get("/metrics").text
    assert 'upstream_requests_total{outcome="valid",upstream="auth-service"} 1.0' in text
    assert 'upstream_request_duration_seconds_count{upstream="auth-service"} 1.0' in text


@pytest.fixture
def postgres_behind_proxy() -> Iterator[tuple[TcpProxy, str, str]]:
    url = postgres_url(POSTGRES_URL_VARIABLE)
    schema = new_schema(url)
    parts = urlsplit(url)
    try:
        with TcpProxy(parts.port or 5432).running() as proxy:
            proxied = parts._replace(netloc=f"{parts.hostname}:{proxy.port}").geturl()
            yield proxy, proxied, schema
    finally:
        drop_schema(url, schema)


def test_database_outage_is_503_on_readyz_and_on_create(
    postgres_behind_proxy: tuple[TcpProxy, str, str], stand_in_auth: StandInAuthService
) -> None:
    proxy, url, schema = postgres_behind_proxy
    store = PostgresAccountStore(url, schema=schema)
    headers = caller_headers(store)
    # The client's token, once checked, is not looked up again during the test:
    # the create below reaches the account database rather than stopping at the token.
    settings = Settings(auth_url=stand_in_auth.base_url, client_token_cache_seconds=3600)
    app = create_app(settings, account_store=store)
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(base_url=base_url, headers=headers, timeout=15) as client,
    ):
        assert client.get("/readyz").status_code == 200
        assert client.get("/accounts/1").status_code == 404
        proxy.cut()
        ready = client.get("/readyz")
        created = client.post("/accounts", json=ACCOUNT)
    assert (ready.status_code, ready.json()["code"]) == (503, "store_unavailable")
    assert (created.status_code, created.json()["code"]) == (503, "store_unavailable")
    assert created.headers["Retry-After"].isdigit()
    assert "database" in created.json()["detail"]


def test_request_log_line_names_the_created_account(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="servicekit.requests"):
        account_id = client.post("/accounts", json=ACCOUNT).json()["id"]
    (line,) = [
        vars(record) for record in caplog.records if vars(record).get("route") == "/accounts"
    ]
    assert (line["status"], line["account_id"], line["replayed"]) == (201, account_id, False)
