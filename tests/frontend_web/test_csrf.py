"""The CSRF defence of the sign-up form.

The guard on its own (server-minted cookies, tokens bound to the cookie, the
form's key, the secret and a maximum age, the origin rule), then every rule
through the real app on a real socket, in front of a stand-in user-service.
Token ages are driven by an injected clock, never by waiting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.csrf import (
    COOKIE_NAME,
    DEFAULT_MAX_AGE,
    SECURE_COOKIE_NAME,
    CsrfGuard,
    Verdict,
    is_cross_origin,
)
from frontend_web.factory import create_app
from frontend_web.routes import CROSS_ORIGIN_TITLE
from frontend_web.settings import Settings
from frontend_web.signup import EXPIRED_FORM, Submission
from tests.frontend_web.conftest import PASSWORD, Form, FormBrowser
from tests.frontend_web.html import parse
from tests.frontend_web.stand_in_user_service import INVALID, StandInUserService
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = b"s" * 32
SHARED_SECRET = "a-shared-csrf-secret-of-enough-length-0123"
KEY = "k" * 43
MAX_AGE = 600
# An unsigned value of the shape the cookie had before it was signed.
UNSIGNED_COOKIE = "u" * 43


@dataclass
class Clock:
    """A wall clock that moves only when a test moves it."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class SetCookie:
    """One ``Set-Cookie`` header, split into its parts."""

    name: str
    value: str
    flags: frozenset[str]

    @classmethod
    def of(cls, response: httpx.Response) -> SetCookie:
        [header] = response.headers.get_list("set-cookie")
        pair, *flags = header.split(";")
        name, _, value = pair.partition("=")
        return cls(name, value, frozenset(flag.strip().lower() for flag in flags))


def fields(form: Form, username: str = "alice") -> dict[str, str]:
    return {
        "username": username,
        "password": PASSWORD,
        "csrf_token": form.csrf_token,
        "idempotency_key": form.idempotency_key,
    }


def alert(response: httpx.Response) -> str:
    return parse(response.text).find_all(role="alert")[0].text


def csrf_refusals(caplog: pytest.LogCaptureFixture) -> list[object]:
    """The verdicts of the CSRF refusals that frontend-web logged."""
    return [
        record.__dict__["csrf"]
        for record in caplog.records
        if record.name == "frontend_web" and "csrf" in record.__dict__
    ]


def is_cross_origin_page(response: httpx.Response) -> bool:
    return parse(response.text).find_all("h1")[0].text == CROSS_ORIGIN_TITLE


# The guard on its own.


def test_token_is_accepted_with_its_cookie_and_key() -> None:
    guard = CsrfGuard(SECRET)
    cookie = guard.new_cookie()

    assert guard.check(cookie, KEY, guard.token(cookie, KEY)) is Verdict.VALID


def test_token_is_refused_with_another_cookie_key_or_secret() -> None:
    guard = CsrfGuard(SECRET)
    cookie = guard.new_cookie()
    token = guard.token(cookie, KEY)

    assert guard.check(guard.new_cookie(), KEY, token) is Verdict.INVALID  # another browser
    assert guard.check(cookie, KEY.upper(), token) is Verdict.INVALID  # another form
    assert guard.check(None, KEY, token) is Verdict.INVALID  # no cookie
    # Another app without a shared secret: its cookies and tokens mean nothing here.
    assert CsrfGuard(b"t" * 32).check(cookie, KEY, token) is Verdict.INVALID


@pytest.mark.parametrize("token", ["", "0" * 64, "not-a-token", "é" * 64, f"{KEY}.AAAA.sig"])
def test_forged_tokens_are_refused(token: str) -> None:
    guard = CsrfGuard(SECRET)

    assert guard.check(guard.new_cookie(), KEY, token) is Verdict.INVALID


def test_minted_cookie_is_kept_and_every_other_value_replaced() -> None:
    guard = CsrfGuard(SECRET)
    minted = guard.new_cookie()
    nonce, _, signature = minted.rpartition(".")
    others = [
        None,
        "",
        UNSIGNED_COOKIE,
        f"{UNSIGNED_COOKIE}.{signature}",  # another nonce under this signature
        f"{nonce}.{'A' * len(signature)}",  # this nonce under a made-up signature
        CsrfGuard(b"t" * 32).new_cookie(),  # minted by an app with another secret
        minted + "x" * 300,
    ]

    assert guard.cookie_value(minted) == minted
    for value in others:
        fresh = guard.cookie_value(value)
        assert fresh != value
        assert guard.cookie_value(fresh) == fresh
    assert guard.new_cookie() != minted


def test_no_token_is_issued_for_a_cookie_the_app_did_not_mint() -> None:
    with pytest.raises(ValueError, match="not minted by this app"):
        CsrfGuard(SECRET).token(UNSIGNED_COOKIE, KEY)


def test_token_expires_after_the_maximum_age() -> None:
    clock = Clock()
    guard = CsrfGuard(SECRET, max_age=MAX_AGE, clock=clock)
    cookie = guard.new_cookie()
    token = guard.token(cookie, KEY)

    clock.now += MAX_AGE
    assert guard.check(cookie, KEY, token) is Verdict.VALID
    clock.now += 1
    assert guard.check(cookie, KEY, token) is Verdict.EXPIRED
    # Stale is not a way around the binding: with another key or cookie it is invalid.
    assert guard.check(cookie, KEY.upper(), token) is Verdict.INVALID
    assert guard.check(guard.new_cookie(), KEY, token) is Verdict.INVALID


def test_token_dated_in_the_future_is_refused() -> None:
    clock = Clock()
    guard = CsrfGuard(SECRET, max_age=MAX_AGE, clock=clock)
    cookie = guard.new_cookie()
    token = guard.token(cookie, KEY)

    clock.now -= 1

    assert guard.check(cookie, KEY, token) is Verdict.EXPIRED


def test_maximum_age_defaults_to_two_hours() -> None:
    clock = Clock()
    guard = CsrfGuard(SECRET, clock=clock)
    cookie = guard.new_cookie()
    token = guard.token(cookie, KEY)

    clock.now += 2 * 60 * 60
    assert guard.check(cookie, KEY, token) is Verdict.VALID
    clock.now += 1
    assert guard.check(cookie, KEY, token) is Verdict.EXPIRED
    assert guard.max_age == DEFAULT_MAX_AGE == 7200


def test_short_secret_or_maximum_age_under_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        CsrfGuard(b"s" * 31)
    with pytest.raises(ValueError, match="at least one second"):
        CsrfGuard(SECRET, max_age=0)


def test_guard_repr_hides_the_secret() -> None:
    assert "sss" not in repr(CsrfGuard(SECRET))


def test_submission_repr_hides_the_password_and_token() -> None:
    submission = Submission("alice", "pw-7f3c9e-never-echo-me", KEY, "token-value")

    assert "pw-7f3c9e" not in repr(submission)
    assert "token-value" not in repr(submission)


OWN = "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("origin", "fetch_site", "refused"),
    [
        (None, None, False),  # an old browser, curl: the token decides
        (OWN, None, False),
        (OWN, "same-origin", False),
        (None, "same-origin", False),
        (None, "none", False),  # typed, bookmarked, reloaded
        ("HTTP://127.0.0.1:8080", None, False),  # origins compare case-insensitively
        ("http://127.0.0.1:8081", None, True),  # another port
        ("http://127.0.0.1:8081", "same-site", True),  # same site, another origin
        ("https://127.0.0.1:8080", None, True),  # another scheme
        ("http://localhost:8080", None, True),  # another host
        ("null", None, True),  # an opaque origin: a sandboxed frame, a data: URL
        ("null", "same-site", True),
        ("null", "same-origin", False),  # the page's own form under Referrer-Policy: no-referrer
        ("http://127.0.0.1:8080/signup", None, True),  # not an origin
        ("http://127.0.0.1:99999", None, True),  # not a port
        ("not a url", None, True),
        ("https://[]]x@", None, True),
        ("ftp://127.0.0.1:8080", None, True),
        ("http://user@127.0.0.1:8080", None, True),
        (None, "cross-site", True),
        (OWN, "cross-site", True),
        (None, " Cross-Site ", True),
    ],
)
def test_origin_and_fetch_site_rule(
    origin: str | None,
    fetch_site: str | None,
    refused: bool,  # noqa: FBT001 - a parameter of the test
) -> None:
    assert is_cross_origin(origin=origin, fetch_site=fetch_site, own_origin=OWN) is refused


def test_default_ports_are_the_same_origin() -> None:
    assert not is_cross_origin(
        origin="http://x.test", fetch_site=None, own_origin="http://x.test:80"
    )
    assert not is_cross_origin(
        origin="https://x.test", fetch_site=None, own_origin="https://x.test:443"
    )
    assert is_cross_origin(origin="https://x.test", fetch_site=None, own_origin="http://x.test:443")


# Through the app, on plain HTTP.


def test_cookie_is_http_only_strict_site_wide_and_not_secure_on_plain_http(
    frontend_url: str,
) -> None:
    cookie = SetCookie.of(httpx.get(f"{frontend_url}/"))

    assert cookie.name == COOKIE_NAME
    assert cookie.flags == {"httponly", "path=/", "samesite=strict"}


@pytest.mark.parametrize(
    "value",
    [UNSIGNED_COOKIE, "chosen-by-the-client", CsrfGuard(b"t" * 32).new_cookie(), ""],
    ids=["unsigned", "arbitrary", "another-secret", "empty"],
)
def test_client_chosen_cookie_is_replaced_by_a_minted_one(
    frontend_url: str, user_service: StandInUserService, value: str
) -> None:
    page = httpx.get(f"{frontend_url}/", headers={"Cookie": f"{COOKIE_NAME}={value}"})

    minted = SetCookie.of(page).value
    assert minted not in {value, ""}
    # The form on that page is bound to the minted cookie, not to the client's value.
    form = Form.of(parse(page.text))
    with_chosen = httpx.post(
        f"{frontend_url}/signup", data=fields(form), headers={"Cookie": f"{COOKIE_NAME}={value}"}
    )
    with_minted = httpx.post(
        f"{frontend_url}/signup", data=fields(form), headers={"Cookie": f"{COOKIE_NAME}={minted}"}
    )
    assert (with_chosen.status_code, with_minted.status_code) == (403, 200)
    assert len(user_service.received) == 1


def test_minted_cookie_is_kept_across_pages(visitor: FormBrowser) -> None:
    first = SetCookie.of(visitor.client.get("/")).value

    assert SetCookie.of(visitor.client.get("/")).value == first


def test_post_with_a_forged_cookie_gets_a_fresh_minted_one_and_a_working_form(
    frontend_url: str, user_service: StandInUserService
) -> None:
    form = Form.of(parse(httpx.get(f"{frontend_url}/").text))

    refused = httpx.post(
        f"{frontend_url}/signup",
        data=fields(form),
        headers={"Cookie": f"{COOKIE_NAME}={UNSIGNED_COOKIE}"},
    )

    assert refused.status_code == 403
    assert user_service.received == []
    minted = SetCookie.of(refused).value
    assert minted not in {UNSIGNED_COOKIE, ""}
    accepted = httpx.post(
        f"{frontend_url}/signup",
        data=fields(Form.of(parse(refused.text))),
        headers={"Cookie": f"{COOKIE_NAME}={minted}"},
    )
    assert accepted.status_code == 200


def test_post_without_the_cookie_is_refused_and_user_service_not_called(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    visitor.client.cookies.clear()

    response = visitor.submit(form=form)

    assert response.status_code == 403
    assert user_service.received == []


def test_post_without_a_token_is_refused_and_user_service_not_called(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    response = visitor.submit(csrf_token="")

    assert response.status_code == 403
    assert user_service.received == []


@pytest.mark.parametrize("token", ["0" * 64, "not-a-token", "é" * 64])
def test_post_with_a_forged_token_is_refused(
    visitor: FormBrowser, user_service: StandInUserService, token: str
) -> None:
    response = visitor.submit(csrf_token=token)

    assert response.status_code == 403
    assert user_service.received == []


def test_token_of_another_browser_is_refused(
    frontend_url: str, visitor: FormBrowser, user_service: StandInUserService
) -> None:
    with httpx.Client(base_url=frontend_url) as other_client:
        others_form = FormBrowser(other_client).open_form()

    response = visitor.submit(form=others_form)

    assert response.status_code == 403
    assert user_service.received == []


def test_token_is_bound_to_the_forms_idempotency_key(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    form = visitor.open_form()
    other = visitor.open_form()

    response = visitor.submit(form=Form(form.csrf_token, other.idempotency_key))

    assert response.status_code == 403
    assert user_service.received == []


def test_refusal_is_a_page_with_a_fresh_form_and_nothing_echoed(visitor: FormBrowser) -> None:
    response = visitor.submit("mallory", csrf_token="forged")

    page = parse(response.text)
    assert alert(response).endswith(EXPIRED_FORM)
    assert page.by_id("username").get("value") == ""
    assert "mallory" not in response.text
    assert visitor.submit(form=Form.of(page)).status_code == 200


def test_forms_loaded_in_two_tabs_are_both_accepted(
    visitor: FormBrowser, user_service: StandInUserService
) -> None:
    first_tab, second_tab = visitor.open_form(), visitor.open_form()
    user_service.script(INVALID)

    assert visitor.submit(form=first_tab).status_code == 422
    assert visitor.submit(form=second_tab).status_code == 422
    assert len(user_service.received) == 2


def test_form_of_one_app_is_refused_by_another_without_a_shared_secret(
    user_service: StandInUserService,
) -> None:
    settings = Settings(user_service_url=user_service.base_url)
    with (
        serve_in_thread(create_app(settings)) as first,
        serve_in_thread(create_app(settings)) as second,
        httpx.Client() as client,  # cookies are not per port: both apps get the same one
    ):
        form = FormBrowser(client, first).open_form()
        response = FormBrowser(client, second).submit(form=form)

    assert response.status_code == 403
    assert user_service.received == []


def test_form_of_one_app_is_accepted_by_another_with_the_same_secret(
    user_service: StandInUserService,
) -> None:
    settings = Settings(
        user_service_url=user_service.base_url,
        csrf_secret=SHARED_SECRET,  # type: ignore[arg-type]
    )
    with (
        serve_in_thread(create_app(settings)) as first,
        serve_in_thread(create_app(settings)) as second,
        httpx.Client() as client,  # cookies are not per port: both apps get the same one
    ):
        form = FormBrowser(client, first).open_form()
        response = FormBrowser(client, second).submit(form=form)

    assert response.status_code == 200
    assert len(user_service.received) == 1


# The maximum age, through the app, with an injected clock.


@dataclass(frozen=True)
class ClockedFrontend:
    url: str
    clock: Clock


@pytest.fixture(scope="module")
def clocked_frontend(running_user_service: StandInUserService) -> Iterator[ClockedFrontend]:
    clock = Clock()
    settings = Settings(
        user_service_url=running_user_service.base_url, csrf_max_age_seconds=MAX_AGE
    )
    with serve_in_thread(create_app(settings, clock=clock)) as url:
        yield ClockedFrontend(url, clock)


def test_form_is_accepted_up_to_its_maximum_age(
    clocked_frontend: ClockedFrontend, user_service: StandInUserService
) -> None:
    with httpx.Client(base_url=clocked_frontend.url) as client:
        browser = FormBrowser(client)
        form = browser.open_form()
        clocked_frontend.clock.now += MAX_AGE

        response = browser.submit(form=form)

    assert response.status_code == 200
    assert len(user_service.received) == 1


def test_stale_form_is_refused_with_a_page_saying_so_and_a_fresh_form(
    clocked_frontend: ClockedFrontend,
    user_service: StandInUserService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with httpx.Client(base_url=clocked_frontend.url) as client:
        browser = FormBrowser(client)
        stale = browser.open_form()
        clocked_frontend.clock.now += MAX_AGE + 1

        with caplog.at_level(logging.WARNING, logger="frontend_web"):
            refused = browser.submit("alice", form=stale)

        assert refused.status_code == 403
        assert user_service.received == []
        assert alert(refused).endswith(EXPIRED_FORM)
        assert csrf_refusals(caplog) == ["expired"]
        assert PASSWORD not in refused.text
        assert parse(refused.text).by_id("username").get("value") == "alice"
        fresh = Form.of(parse(refused.text))
        assert fresh.idempotency_key != stale.idempotency_key
        assert browser.submit(form=fresh).status_code == 200
    assert len(user_service.received) == 1


def test_forged_token_is_logged_as_invalid_not_expired(
    clocked_frontend: ClockedFrontend, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        httpx.Client(base_url=clocked_frontend.url) as client,
        caplog.at_level(logging.WARNING, logger="frontend_web"),
    ):
        refused = FormBrowser(client).submit(csrf_token="forged")

    assert refused.status_code == 403
    assert csrf_refusals(caplog) == ["invalid"]


def test_max_age_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_WEB_CSRF_MAX_AGE_SECONDS", "90")

    assert Settings().csrf_max_age_seconds == 90


def test_max_age_defaults_to_two_hours_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FRONTEND_WEB_CSRF_MAX_AGE_SECONDS", raising=False)

    assert Settings().csrf_max_age_seconds == 7200
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Settings(csrf_max_age_seconds=0)


# Origin and Sec-Fetch-Site, through the app.


def test_post_from_the_pages_own_origin_is_accepted(
    frontend_url: str, visitor: FormBrowser, user_service: StandInUserService
) -> None:
    headers = {"Origin": frontend_url, "Sec-Fetch-Site": "same-origin"}

    response = visitor.client.post("/signup", data=fields(visitor.open_form()), headers=headers)

    assert response.status_code == 200
    assert len(user_service.received) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
        {"Origin": "http://localhost:1", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["other-port", "same-site", "cross-site", "opaque", "fetch-site-only"],
)
def test_post_from_another_origin_is_refused_even_with_a_valid_token(
    visitor: FormBrowser, user_service: StandInUserService, headers: dict[str, str]
) -> None:
    response = visitor.client.post("/signup", data=fields(visitor.open_form()), headers=headers)

    assert response.status_code == 403
    assert is_cross_origin_page(response)
    assert response.headers["cache-control"] == "no-store"
    assert user_service.received == []


def test_cross_origin_post_is_refused_before_its_body_or_token_is_looked_at(
    frontend_url: str, user_service: StandInUserService
) -> None:
    # No cookie, no token, not even a form: the refusal is the cross-origin page,
    # not the "form expired" page that the token check would give, and mints nothing.
    response = httpx.post(
        f"{frontend_url}/signup",
        content=b"\xff not a form",
        headers={"Origin": "http://127.0.0.1:1", "Content-Type": "multipart/form-data"},
    )

    assert response.status_code == 403
    assert is_cross_origin_page(response)
    assert "set-cookie" not in response.headers
    assert PASSWORD not in response.text
    assert user_service.received == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://[]]x@"},
        {"Origin": "http://[::1"},
        {"Origin": "http://127.0.0.1:99999"},
        {"Origin": "http://127.0.0.1:1", "Host": "[]]x@"},
        {"Origin": "http://x.test", "Host": "x.test:port"},
    ],
    ids=["origin-brackets", "origin-open-bracket", "origin-port", "host-brackets", "host-port"],
)
def test_malformed_origin_or_host_is_refused_never_a_500(
    visitor: FormBrowser, user_service: StandInUserService, headers: dict[str, str]
) -> None:
    response = visitor.client.post("/signup", data=fields(visitor.open_form()), headers=headers)

    assert response.status_code == 403
    assert is_cross_origin_page(response)
    assert user_service.received == []


# HTTPS: a TLS-terminating proxy in front (X-Forwarded-Proto), or the setting.


def test_cookie_over_https_is_host_prefixed_and_secure(frontend_url: str) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as from a TLS-terminating proxy.
    cookie = SetCookie.of(httpx.get(f"{frontend_url}/", headers={"X-Forwarded-Proto": "https"}))

    assert cookie.name == SECURE_COOKIE_NAME == "__Host-csrf"
    assert cookie.flags == {"httponly", "path=/", "samesite=strict", "secure"}


def test_form_round_trip_over_https(frontend_url: str, user_service: StandInUserService) -> None:
    https = {"X-Forwarded-Proto": "https"}
    page = httpx.get(f"{frontend_url}/", headers=https)
    cookie = SetCookie.of(page)
    own_origin = frontend_url.replace("http://", "https://")

    response = httpx.post(
        f"{frontend_url}/signup",
        data=fields(Form.of(parse(page.text))),
        headers={**https, "Cookie": f"{cookie.name}={cookie.value}", "Origin": own_origin},
    )

    assert response.status_code == 200
    assert len(user_service.received) == 1


def test_cookie_without_the_prefix_is_not_read_over_https(
    frontend_url: str, user_service: StandInUserService
) -> None:
    # Any host that can write plain cookies for this name could plant a csrf= cookie;
    # over HTTPS only the __Host- one, which only this host can set, counts.
    https = {"X-Forwarded-Proto": "https"}
    page = httpx.get(f"{frontend_url}/", headers=https)
    value = SetCookie.of(page).value

    response = httpx.post(
        f"{frontend_url}/signup",
        data=fields(Form.of(parse(page.text))),
        headers={**https, "Cookie": f"{COOKIE_NAME}={value}"},
    )

    assert response.status_code == 403
    assert alert(response).endswith(EXPIRED_FORM)
    assert user_service.received == []


def test_origin_over_https_must_be_https(
    frontend_url: str, user_service: StandInUserService
) -> None:
    https = {"X-Forwarded-Proto": "https"}
    page = httpx.get(f"{frontend_url}/", headers=https)
    cookie = SetCookie.of(page)

    response = httpx.post(
        f"{frontend_url}/signup",
        data=fields(Form.of(parse(page.text))),
        headers={**https, "Cookie": f"{cookie.name}={cookie.value}", "Origin": frontend_url},
    )

    assert response.status_code == 403
    assert is_cross_origin_page(response)
    assert user_service.received == []


@pytest.fixture(scope="module")
def public_https_url(running_user_service: StandInUserService) -> Iterator[str]:
    settings = Settings(user_service_url=running_user_service.base_url, public_https=True)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def test_public_https_setting_names_the_cookie_for_https_on_a_plain_connection(
    public_https_url: str, user_service: StandInUserService
) -> None:
    page = httpx.get(f"{public_https_url}/")
    cookie = SetCookie.of(page)
    form = Form.of(parse(page.text))
    sent = {"Cookie": f"{cookie.name}={cookie.value}"}

    from_http = httpx.post(
        f"{public_https_url}/signup",
        data=fields(form),
        headers={**sent, "Origin": public_https_url},
    )
    from_https = httpx.post(
        f"{public_https_url}/signup",
        data=fields(form),
        headers={**sent, "Origin": public_https_url.replace("http://", "https://")},
    )

    assert cookie.name == SECURE_COOKIE_NAME
    assert cookie.flags == {"httponly", "path=/", "samesite=strict", "secure"}
    assert from_http.status_code == 403
    assert is_cross_origin_page(from_http)
    assert from_https.status_code == 200
    assert len(user_service.received) == 1


def test_public_https_is_read_from_the_environment_and_off_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FRONTEND_WEB_PUBLIC_HTTPS", raising=False)
    assert Settings().public_https is False

    monkeypatch.setenv("FRONTEND_WEB_PUBLIC_HTTPS", "true")
    assert Settings().public_https is True
