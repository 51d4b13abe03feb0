"""The frontend-web application, served by uvicorn with its lifespan."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.app import create_app
from frontend_web.client import FrontendClient
from frontend_web.settings import Settings
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

USER_SERVICE_URL = "http://users.test:8000"


@pytest.fixture
def base_url() -> Iterator[str]:
    with serve_in_thread(create_app(Settings(user_service_url=USER_SERVICE_URL))) as url:
        yield url


def test_home_page_is_an_html_placeholder(base_url: str) -> None:
    response = httpx.get(f"{base_url}/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in response.text
    assert "<title>frontend-web</title>" in response.text
    assert "sign-up page is coming" in response.text


def test_home_page_shows_the_user_service_url(base_url: str) -> None:
    response = httpx.get(f"{base_url}/")

    assert f"<code>{USER_SERVICE_URL}</code>" in response.text


def test_home_page_escapes_the_user_service_url() -> None:
    settings = Settings(user_service_url="http://users.test/<script>&x")

    with serve_in_thread(create_app(settings)) as url:
        response = httpx.get(f"{url}/")

    assert "<code>http://users.test/&lt;script&gt;&amp;x</code>" in response.text
    assert "<script>" not in response.text


def test_livez_reports_ok(base_url: str) -> None:
    response = httpx.get(f"{base_url}/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_URL", "http://users.from-env.test:9000")

    with serve_in_thread(create_app()) as url:
        response = httpx.get(f"{url}/")

    assert "<code>http://users.from-env.test:9000</code>" in response.text


def test_user_service_url_defaults_to_local_port_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRONTEND_WEB_USER_SERVICE_URL", raising=False)

    assert Settings().user_service_url == "http://127.0.0.1:8000"


def test_lifespan_opens_the_given_client_and_closes_it() -> None:
    client = FrontendClient("http://users.test:8000")
    app = create_app(client=client)

    with serve_in_thread(app):
        open_while_serving = client.is_open

    assert open_while_serving
    assert not client.is_open
    assert app.state.client is client
