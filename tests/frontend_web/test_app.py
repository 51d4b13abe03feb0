"""The frontend-web application: its pages, assets and operational endpoints."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.client import FrontendClient
from frontend_web.factory import create_app
from frontend_web.settings import Settings
from frontend_web.state import service_state_of
from tests.frontend_web.conftest import PASSWORD
from tests.frontend_web.html import Element, parse
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from tests.frontend_web.conftest import FormBrowser
    from tests.frontend_web.stand_in_user_service import StandInUserService


def form_page(frontend_url: str) -> tuple[httpx.Response, Element]:
    response = httpx.get(f"{frontend_url}/")
    return response, parse(response.text)


def test_home_page_is_the_sign_up_form(frontend_url: str) -> None:
    response, page = form_page(frontend_url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<!DOCTYPE html>")
    assert page.find_all("html", lang="en")
    assert page.find_all("title")[0].text == "Sign up \N{EN DASH} Accounts"
    assert [h1.text for h1 in page.find_all("h1")] == ["Sign up"]
    [form] = page.find_all("form")
    assert (form.get("method"), form.get("action")) == ("post", "/signup")
    assert [button.text for button in form.find_all("button", type="submit")] == ["Sign up"]


def test_every_visible_input_has_a_label(frontend_url: str) -> None:
    _, page = form_page(frontend_url)

    visible = [i for i in page.find_all("input") if i.get("type") != "hidden"]
    labels = {label.get("for"): label.text for label in page.find_all("label")}
    assert [(i.get("name"), labels.get(i.get("id"))) for i in visible] == [
        ("username", "Username"),
        ("password", "Password"),
    ]


def test_inputs_help_password_managers_and_never_hold_a_password(frontend_url: str) -> None:
    _, page = form_page(frontend_url)

    username, password = page.by_id("username"), page.by_id("password")
    assert (username.get("type"), username.get("autocomplete")) == ("text", "username")
    assert (password.get("type"), password.get("autocomplete")) == ("password", "current-password")
    assert password.get("value") is None


def test_page_without_errors_has_no_error_summary(frontend_url: str) -> None:
    _, page = form_page(frontend_url)

    assert not page.find_all(role="alert")
    assert all(i.get("aria-invalid") is None for i in page.find_all("input"))


def test_ids_are_unique(frontend_url: str) -> None:
    _, page = form_page(frontend_url)

    ids = [element.get("id") for element in page.iter() if element.get("id")]
    assert len(ids) == len(set(ids))


def test_page_has_no_script_no_inline_style_and_nothing_from_elsewhere(
    frontend_url: str,
) -> None:
    response, page = form_page(frontend_url)

    assert not page.find_all("script")
    assert not page.find_all("style")
    assert all(element.get("style") is None for element in page.iter())
    references = [
        value
        for element in page.iter()
        for name in ("href", "src", "action")
        if (value := element.get(name)) is not None
    ]
    assert references
    assert all(value.startswith(("/", "#")) for value in references), references
    assert not re.search(r"(https?:)?//", response.text)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/site.css", "text/css"), ("/static/favicon.svg", "image/svg+xml")],
)
def test_assets_linked_from_the_page_are_served(
    frontend_url: str, path: str, content_type: str
) -> None:
    _, page = form_page(frontend_url)
    response = httpx.get(f"{frontend_url}{path}")

    assert path in [link.get("href") for link in page.find_all("link")]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)


def test_stylesheet_fetches_nothing(frontend_url: str) -> None:
    css = httpx.get(f"{frontend_url}/static/site.css").text

    assert "url(" not in css
    assert "@import" not in css


def test_unknown_page_is_an_html_404(frontend_url: str) -> None:
    response = httpx.get(f"{frontend_url}/no-such-page")

    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert parse(response.text).find_all("h1")[0].text == "Not Found"


def test_api_docs_are_not_served(frontend_url: str) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{frontend_url}{path}").status_code == 404


def test_getting_the_outcome_address_leads_back_to_the_form(frontend_url: str) -> None:
    response = httpx.get(f"{frontend_url}/signup")

    assert (response.status_code, response.headers["location"]) == (303, "/")


def test_livez_reports_ok(frontend_url: str) -> None:
    response = httpx.get(f"{frontend_url}/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_count_pages_and_calls_to_user_service(
    visitor: FormBrowser, frontend_url: str
) -> None:
    visitor.submit()

    metrics = httpx.get(f"{frontend_url}/metrics").text

    assert re.search(r'http_requests_total\{method="POST",route="/signup",status="200"\}', metrics)
    assert re.search(
        r'upstream_requests_total\{outcome="created",upstream="user-service"\}', metrics
    )
    assert "upstream_request_duration_seconds_bucket" in metrics


def test_request_id_is_returned_and_forwarded_to_user_service(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    fields = {
        "username": "alice",
        "password": PASSWORD,
        "csrf_token": form.csrf_token,
        "idempotency_key": form.idempotency_key,
    }

    response = visitor.client.post("/signup", data=fields, headers={"X-Request-ID": "trace-42"})

    assert response.headers["x-request-id"] == "trace-42"
    assert [r.headers.get("x-request-id") for r in user_service.received] == ["trace-42"]


def test_lifespan_opens_the_given_client_and_closes_it() -> None:
    client = FrontendClient("http://users.test:8000")
    app = create_app(client=client)

    with serve_in_thread(app):
        open_while_serving = client.is_open

    assert open_while_serving
    assert not client.is_open
    assert service_state_of(app).client is client


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_URL", "https://users.from-env.test:9000")

    app = create_app()

    with serve_in_thread(app):
        assert service_state_of(app).client.base_url == "https://users.from-env.test:9000"


def test_user_service_url_defaults_to_local_port_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRONTEND_WEB_USER_SERVICE_URL", raising=False)

    assert Settings().user_service_url == "http://127.0.0.1:8000"


def test_csrf_secret_defaults_to_none_so_each_app_makes_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FRONTEND_WEB_CSRF_SECRET", raising=False)

    assert Settings().csrf_secret is None


def test_csrf_secret_is_read_from_the_environment_and_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_CSRF_SECRET", "s" * 40)

    settings = Settings()

    assert settings.csrf_secret is not None
    assert settings.csrf_secret.get_secret_value() == "s" * 40
    assert "s" * 40 not in repr(settings)


def test_short_csrf_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(csrf_secret="too-short")  # type: ignore[arg-type]
