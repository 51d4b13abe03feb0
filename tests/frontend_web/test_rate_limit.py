"""The sign-up rate limit per client address, in the process's memory, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
from pydantic import ValidationError

from frontend_web.factory import create_app
from frontend_web.rate_limit import RATE_LIMITED, client_key, rate_limited
from frontend_web.settings import Settings
from tests.frontend_web.conftest import OTHER_PASSWORD, PASSWORD, Form, FormBrowser
from tests.frontend_web.html import parse
from tests.support.servers import HOST, free_port, run_process, serve_in_thread, venv_command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi import FastAPI

    from tests.frontend_web.stand_in_user_service import StandInUserService

ALLOWED_WAIT_SECONDS = 10


@contextmanager
def limited_browser(user_service: StandInUserService, **settings: object) -> Iterator[FormBrowser]:
    app = create_app(Settings(user_service_url=user_service.base_url, **settings))  # type: ignore[arg-type]
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield FormBrowser(client)


@pytest.fixture
def two_a_minute(user_service: StandInUserService) -> Iterator[FormBrowser]:
    with limited_browser(user_service, rate_limit="2/minute") as browser:
        yield browser


@pytest.fixture
def one_a_minute(user_service: StandInUserService) -> Iterator[FormBrowser]:
    with limited_browser(user_service, rate_limit="1/minute") as browser:
        yield browser


def alert_text(response: httpx.Response) -> str:
    [summary] = parse(response.text).find_all(role="alert")
    return summary.text


def assert_rate_limited_page(response: httpx.Response) -> int:
    """Check the 429 page and return its ``Retry-After``."""
    assert response.status_code == 429
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert alert_text(response) == f"There is a problem {rate_limited(retry_after)}"
    assert PASSWORD not in response.text
    assert PASSWORD not in str(response.headers)
    return retry_after


def test_an_attempt_past_the_limit_gets_the_429_page_and_keeps_the_form(
    two_a_minute: FormBrowser, user_service: StandInUserService
) -> None:
    assert two_a_minute.submit().status_code == 200
    assert two_a_minute.submit().status_code == 200
    form = two_a_minute.open_form()

    refused = two_a_minute.submit(form=form)

    assert_rate_limited_page(refused)
    page = parse(refused.text)
    assert page.field_value("idempotency_key") == form.idempotency_key
    assert page.by_id("username").get("value") == "alice"
    assert page.by_id("password").get("value") is None
    assert len(user_service.received) == 2


def test_the_429_pages_form_can_be_sent_again_once_the_window_has_room(
    user_service: StandInUserService,
) -> None:
    with limited_browser(user_service, rate_limit="1 per 2 seconds") as browser:
        assert browser.submit().status_code == 200
        refused = browser.submit(password=OTHER_PASSWORD)
        assert OTHER_PASSWORD not in refused.text
        form = Form.of(parse(refused.text))

        # A refused attempt is not counted: the window frees a slot at the time told.
        deadline = time.monotonic() + ALLOWED_WAIT_SECONDS
        again = browser.submit(form=form)
        while again.status_code == 429 and time.monotonic() < deadline:
            time.sleep(int(again.headers["retry-after"]) / 4)
            again = browser.submit(form=form)

        assert again.status_code == 200
        assert user_service.received[-1].idempotency_key == form.idempotency_key


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (1, "Too many sign-up attempts from your network, please try again in 1 second"),
        (42, "Too many sign-up attempts from your network, please try again in 42 seconds"),
    ],
)
def test_the_message_says_how_many_seconds_to_wait(seconds: int, message: str) -> None:
    assert rate_limited(seconds) == message


def test_only_the_post_of_the_form_is_counted(
    one_a_minute: FormBrowser, user_service: StandInUserService
) -> None:
    for _ in range(5):
        assert one_a_minute.client.get("/").status_code == 200
        assert one_a_minute.client.get("/static/site.css").status_code == 200
        assert one_a_minute.client.get("/signup").status_code == 303

    assert one_a_minute.submit().status_code == 200
    assert_rate_limited_page(one_a_minute.submit())
    assert len(user_service.received) == 1


def test_attempts_are_counted_before_the_csrf_check(
    one_a_minute: FormBrowser, user_service: StandInUserService
) -> None:
    form = one_a_minute.open_form()
    forged = one_a_minute.submit(form=form, csrf_token="forged")
    assert forged.status_code == 403

    refused = one_a_minute.submit(form=form)

    assert_rate_limited_page(refused)
    assert user_service.received == []


def test_a_refused_form_that_is_not_this_browsers_own_is_not_shown_again(
    one_a_minute: FormBrowser,
) -> None:
    form = one_a_minute.open_form()
    assert one_a_minute.submit(form=form).status_code == 200

    refused = one_a_minute.submit("mallory", form=form, csrf_token="forged")

    assert_rate_limited_page(refused)
    page = parse(refused.text)
    assert page.by_id("username").get("value") == ""
    assert page.field_value("idempotency_key") != form.idempotency_key
    assert "mallory" not in refused.text


def test_an_empty_body_past_the_limit_gets_the_429_page(one_a_minute: FormBrowser) -> None:
    assert one_a_minute.client.post("/signup").status_code == 403

    assert_rate_limited_page(one_a_minute.client.post("/signup"))


def test_refusals_are_counted_in_the_metrics_and_logged_with_their_code(
    one_a_minute: FormBrowser, caplog: pytest.LogCaptureFixture
) -> None:
    one_a_minute.submit()
    with caplog.at_level(logging.INFO, logger="servicekit.requests"):
        retry_after = assert_rate_limited_page(one_a_minute.submit())

    metrics = one_a_minute.client.get("/metrics").text
    assert "frontend_rate_limit_refused_total 1.0" in metrics
    assert "frontend_rate_limit_unchecked_total 0.0" in metrics
    [line] = [record for record in caplog.records if getattr(record, "status", None) == 429]
    assert getattr(line, "code", None) == RATE_LIMITED
    assert getattr(line, "retry_after", None) == retry_after


# --- the client address: the peer, or X-Forwarded-For from a trusted proxy ----------------


def statuses(app: FastAPI, requests: list[tuple[str, dict[str, str]]]) -> list[int]:
    """POST an empty form from each ``(peer address, headers)``, in turn, through the ASGI scope."""

    async def run() -> list[int]:
        answers = []
        async with app.router.lifespan_context(app):
            for peer, headers in requests:
                transport = httpx.ASGITransport(app=app, client=(peer, 40000))
                async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
                    answers.append((await client.post("/signup", headers=headers)).status_code)
        return answers

    return asyncio.run(run())


def scope_app(trusted_proxies: str = "") -> FastAPI:
    return create_app(
        Settings(
            user_service_url=f"http://{HOST}:{free_port()}",
            rate_limit="1/minute",
            trusted_proxies=trusted_proxies,  # type: ignore[arg-type]
        )
    )


# An empty form is refused for its CSRF token (403) once counted, and with 429 past the limit.
FIRST, PAST_THE_LIMIT = 403, 429


def test_each_address_has_its_own_count() -> None:
    answers = statuses(scope_app(), [("192.0.2.1", {}), ("192.0.2.2", {}), ("192.0.2.1", {})])

    assert answers == [FIRST, FIRST, PAST_THE_LIMIT]


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    app = scope_app(trusted_proxies="10.0.0.0/8")
    spoofed = [("192.0.2.9", {"X-Forwarded-For": f"198.51.100.{n}"}) for n in (1, 2)]

    assert statuses(app, spoofed) == [FIRST, PAST_THE_LIMIT]


def test_x_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    local = [("127.0.0.1", {"X-Forwarded-For": f"198.51.100.{n}"}) for n in (1, 2)]

    assert statuses(scope_app(), local) == [FIRST, PAST_THE_LIMIT]


def test_a_trusted_proxy_tells_the_client_address() -> None:
    app = scope_app(trusted_proxies="10.0.0.0/8, 192.0.2.50")
    requests = [
        ("10.1.2.3", {"X-Forwarded-For": "198.51.100.1"}),
        ("192.0.2.50", {"X-Forwarded-For": "198.51.100.2"}),
        ("10.9.9.9", {"X-Forwarded-For": "198.51.100.1"}),
    ]

    assert statuses(app, requests) == [FIRST, FIRST, PAST_THE_LIMIT]


def test_the_client_is_the_right_most_untrusted_address_of_x_forwarded_for() -> None:
    app = scope_app(trusted_proxies="10.0.0.0/8")
    # Whatever the client put to the left of what the proxies appended is its own say.
    requests = [
        ("10.0.0.1", {"X-Forwarded-For": "203.0.113.1, 198.51.100.7, 10.0.0.5"}),
        ("10.0.0.1", {"X-Forwarded-For": "203.0.113.2, 198.51.100.7"}),
    ]

    assert statuses(app, requests) == [FIRST, PAST_THE_LIMIT]


def test_an_ipv6_client_is_counted_for_its_64_network() -> None:
    peers = ["2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:2:ffff::9"]
    requests: list[tuple[str, dict[str, str]]] = [(peer, {}) for peer in peers]

    assert statuses(scope_app(), requests) == [FIRST, FIRST, PAST_THE_LIMIT]


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("not-an-address", "not-an-address"),
        ("x" * 500, "x" * 64),
        (None, "unknown"),
    ],
)
def test_client_key(host: str | None, key: str) -> None:
    assert client_key(host) == key


def scheme_cookie(app: FastAPI, peer: str) -> str:
    async def run() -> str:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(peer, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
                response = await client.get("/", headers={"X-Forwarded-Proto": "https"})
        return response.headers["set-cookie"].split("=", 1)[0]

    return asyncio.run(run())


def test_x_forwarded_proto_is_taken_from_trusted_proxies_only() -> None:
    app = scope_app(trusted_proxies="10.0.0.0/8")

    assert scheme_cookie(app, "10.0.0.1") == "__Host-csrf"
    assert scheme_cookie(app, "192.0.2.1") == "csrf"
    assert scheme_cookie(scope_app(), "127.0.0.1") == "csrf"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("trusted_proxies", "expected"),
    [("", [FIRST, PAST_THE_LIMIT]), ("127.0.0.1", [FIRST, FIRST])],
    ids=["no-proxies", "loopback-trusted"],
)
def test_served_frontend_web_takes_x_forwarded_for_from_its_trusted_proxies_only(
    tmp_path: Path, trusted_proxies: str, expected: list[int]
) -> None:
    # uvicorn itself would trust X-Forwarded-For from 127.0.0.1: `serve` turns that off.
    port = free_port()
    command = [venv_command("frontend-web"), "serve", "--host", HOST, "--port", str(port)]
    env = {
        "FRONTEND_WEB_USER_SERVICE_URL": f"http://{HOST}:{free_port()}",
        "FRONTEND_WEB_RATE_LIMIT": "1/minute",
        "FRONTEND_WEB_TRUSTED_PROXIES": trusted_proxies,
    }

    with run_process(command, port=port, env=env, log_path=tmp_path / "frontend-web.log"):
        answers = [
            httpx.post(
                f"http://{HOST}:{port}/signup", headers={"X-Forwarded-For": f"198.51.100.{n}"}
            ).status_code
            for n in (1, 2)
        ]

    assert answers == expected


# --- settings ------------------------------------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RATE_LIMIT", "RATE_LIMIT_STORAGE", "TRUSTED_PROXIES"):
        monkeypatch.delenv(f"FRONTEND_WEB_{name}", raising=False)

    settings = Settings()

    assert settings.rate_limit == "10/minute"
    assert settings.rate_limit_storage.get_secret_value() == "memory://"
    assert settings.trusted_proxies == ()


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_WEB_RATE_LIMIT", "100 per hour")
    monkeypatch.setenv("FRONTEND_WEB_RATE_LIMIT_STORAGE", "rediss://:pw-3e1@redis.test:6380/2")
    monkeypatch.setenv("FRONTEND_WEB_TRUSTED_PROXIES", " 10.0.0.0/8, 192.0.2.7 ,::1,")

    settings = Settings()

    assert settings.rate_limit == "100 per hour"
    assert settings.rate_limit_storage.get_secret_value() == "rediss://:pw-3e1@redis.test:6380/2"
    assert "pw-3e1" not in repr(settings)
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.7", "::1")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ten a minute", 'must be one rate such as "10/minute" or "100 per hour"'),
        ("", 'must be one rate such as "10/minute"'),
        ("10/fortnight", "an amount per second, minute, hour, day, month or year"),
        ("1/second; 10/minute", "not several"),
        ("0/minute", "must allow at least 1 attempt"),
    ],
)
def test_a_bad_rate_is_refused_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_RATE_LIMIT", value)

    with pytest.raises(ValidationError, match="rate_limit") as caught:
        Settings()

    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mongodb://:pw-9f2@db.test", 'must be "memory://" or a URL "redis://host:port/db"'),
        ("memory://somewhere", 'must be "memory://"'),
        ("redis://:pw-9f2@redis.test:port/0", "must have a port that is a number"),
        ("redis://:pw-9f2@/0", "must name the Redis host"),
        ("redis://:pw-9f2@redis.test:6379/zero", "must end with a database number"),
    ],
)
def test_a_bad_storage_is_refused_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_RATE_LIMIT_STORAGE", url)

    with pytest.raises(ValidationError, match="rate_limit_storage") as caught:
        Settings()

    assert reason in str(caught.value)
    assert "pw-9f2" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.0.0.1/8", "10.0.0.1/8 has host bits set"),
        ("10.0.0.0/8, proxy.test", "'proxy.test' does not appear to be an IPv4 or IPv6 address"),
        ("*", "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_bad_trusted_proxies_are_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_TRUSTED_PROXIES", value)

    with pytest.raises(ValidationError, match="trusted_proxies") as caught:
        Settings()

    assert reason in str(caught.value)


@pytest.mark.e2e
def test_serve_exits_3_naming_a_bad_rate() -> None:
    env = {**os.environ, "FRONTEND_WEB_RATE_LIMIT": "often"}
    command = [venv_command("frontend-web"), "serve", "--port", str(free_port())]

    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 3
    assert 'rate_limit: Value error, must be one rate such as \\"10/minute\\"' in result.stderr
