"""user-service with its real AuthClient, against a fault-injecting stand-in auth-service.

Both services run on real sockets; the user-service app is built from its
settings, so its lifespan opens and closes the real client. Each request to
user-service carries the token of a client registered in its store.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from pydantic import SecretStr

from tests.support.log_scan import register_secret
from tests.support.servers import HOST, free_port, serve_in_thread
from tests.support.tls import make_tls
from tests.user_service.client_headers import caller_headers
from tests.user_service.stand_in_auth import (
    Reply,
    StandInAuthService,
    json_reply,
    raw_reply,
    serve_stand_in,
    slow_reply,
    token_refused,
    trickling_reply,
    verdict,
)
from user_service import create_app
from user_service.accounts import InMemoryAccountStore
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.tls import TestTls

USERNAME = "alice"
PASSWORD = "pw-5d1a0b-never-echo-me"
TIMEOUT = 0.3
ACCOUNT = {"username": USERNAME, "password": PASSWORD}
AUTH_TOKEN = register_secret("tok-user-service-for-auth-7e41")
"""The token user-service sends auth-service."""


@dataclass(frozen=True)
class UserService:
    """A served user-service app: a client for it, and its account store."""

    client: httpx.Client
    store: InMemoryAccountStore

    def create_account(self) -> httpx.Response:
        return self.client.post("/accounts", json=ACCOUNT)

    def has_no_account(self) -> bool:
        return asyncio.run(self.store.get(1)) is None


@contextmanager
def serve_user_service(auth_url: str, *, ca_file: Path | None = None) -> Iterator[UserService]:
    settings = Settings(
        auth_url=auth_url,
        auth_timeout=TIMEOUT,
        auth_connect_timeout=TIMEOUT,
        auth_token=SecretStr(AUTH_TOKEN),
        auth_ca_file=ca_file,
    )
    store = InMemoryAccountStore()
    app = create_app(settings, account_store=store)
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(base_url=base_url, timeout=10, headers=caller_headers(store)) as client,
    ):
        yield UserService(client, store)


# One server per auth-service for the whole module keeps the module fast; each
# test starts from an empty store.


@pytest.fixture(scope="module")
def running_user_service(running_stand_in_auth: StandInAuthService) -> Iterator[UserService]:
    with serve_user_service(running_stand_in_auth.base_url) as served:
        yield served


@pytest.fixture(scope="module")
def running_cut_off_user_service() -> Iterator[UserService]:
    with serve_user_service(f"http://{HOST}:{free_port()}") as served:
        yield served


@pytest.fixture
def user_service(
    running_user_service: UserService, stand_in_auth: StandInAuthService
) -> UserService:
    """user-service whose auth-service is the stand-in, with no account yet."""
    del stand_in_auth  # requested so that the stand-in is reset too
    asyncio.run(running_user_service.store.reset())
    return running_user_service


@pytest.fixture
def cut_off_user_service(running_cut_off_user_service: UserService) -> UserService:
    """user-service whose auth-service nobody listens for, with no account yet."""
    asyncio.run(running_cut_off_user_service.store.reset())
    return running_cut_off_user_service


def test_valid_verdict_creates_the_account(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(verdict(valid=True))

    response = user_service.create_account()

    assert response.status_code == 201
    assert response.json() == {"id": 1, "username": USERNAME, "status": "created"}


def test_invalid_verdict_is_401(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(verdict(valid=False))

    response = user_service.create_account()

    assert (response.status_code, response.json()) == (
        401,
        {"detail": "Invalid credentials", "code": "invalid_credentials"},
    )
    assert user_service.has_no_account()


def test_auth_service_receives_exactly_username_and_password(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    user_service.create_account()

    [request] = stand_in_auth.received
    assert (request.method, request.path, request.content_type) == (
        "POST",
        "/auth/validate",
        "application/json",
    )
    assert request.json() == {"username": USERNAME, "password": PASSWORD}


def test_slow_auth_service_is_504(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(slow_reply())
    started = time.monotonic()

    response = user_service.create_account()

    assert response.status_code == 504
    assert time.monotonic() - started < 2.0


def test_auth_service_stalling_mid_answer_is_504(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(trickling_reply())

    assert user_service.create_account().status_code == 504


@pytest.mark.parametrize("status", [500, 502, 504])
def test_auth_service_error_status_is_502(
    stand_in_auth: StandInAuthService, user_service: UserService, status: int
) -> None:
    stand_in_auth.answer(json_reply({"detail": "boom"}, status=status))

    assert user_service.create_account().status_code == 502


def test_overloaded_auth_service_is_503_with_its_retry_after(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(
        Reply(status=503, body=b'{"code": "overloaded"}', headers=(("Retry-After", "7"),))
    )

    response = user_service.create_account()

    assert (response.status_code, response.headers["Retry-After"]) == (503, "7")
    assert response.json()["code"] == "overloaded"
    assert user_service.has_no_account()


@pytest.mark.parametrize("retry_after", [None, "²", "soon", "-3"])
def test_a_503_with_no_readable_retry_after_asks_for_one_second(
    stand_in_auth: StandInAuthService, user_service: UserService, retry_after: str | None
) -> None:
    headers = () if retry_after is None else (("Retry-After", retry_after),)
    stand_in_auth.answer(Reply(status=503, body=b"{}", headers=headers))

    response = user_service.create_account()

    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")


def test_a_429_with_an_unreadable_retry_after_is_still_429(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(Reply(status=429, body=b"{}", headers=(("Retry-After", "²"),)))

    response = user_service.create_account()

    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()


def test_the_callers_budget_is_passed_on_less_what_was_spent(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    user_service.client.post("/accounts", json=ACCOUNT, headers={"X-Time-Budget-Ms": "250"})
    user_service.create_account()

    given, default = (int(request.budget_ms or "-1") for request in stand_in_auth.received)
    assert 0 < given <= 250
    assert default == int(TIMEOUT * 1000)


def test_too_little_budget_left_is_503_without_asking_auth_service(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    response = user_service.client.post(
        "/accounts", json=ACCOUNT, headers={"X-Time-Budget-Ms": "5"}
    )

    assert (response.status_code, response.json()["code"]) == (503, "overloaded")
    assert int(response.headers["Retry-After"]) >= 1
    assert stand_in_auth.received == []
    assert user_service.has_no_account()


def test_answer_that_is_not_json_is_502(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(raw_reply(b"<html>it works</html>", content_type="text/html"))

    assert user_service.create_account().status_code == 502


@pytest.mark.parametrize(
    "body", [{"valid": "yes"}, {"valid": 1}, {"subject": "alice"}], ids=["string", "int", "missing"]
)
def test_answer_without_boolean_valid_is_502(
    stand_in_auth: StandInAuthService, user_service: UserService, body: object
) -> None:
    stand_in_auth.answer(json_reply(body))

    assert user_service.create_account().status_code == 502


def test_lockout_reported_by_auth_service_is_429_with_its_retry_after(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(Reply(status=429, body=b"{}", headers=(("Retry-After", "900"),)))

    response = user_service.create_account()

    assert (response.status_code, response.headers["Retry-After"]) == (429, "900")
    assert "Too many failed attempts" in response.json()["detail"]
    assert user_service.has_no_account()


def test_unreachable_auth_service_is_503(cut_off_user_service: UserService) -> None:
    assert cut_off_user_service.create_account().status_code == 503


def test_unreachable_auth_service_says_when_to_retry(cut_off_user_service: UserService) -> None:
    response = cut_off_user_service.create_account()

    assert int(response.headers["Retry-After"]) > 0


def test_user_service_recovers_once_auth_service_answers_again(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    stand_in_auth.answer(slow_reply())
    user_service.create_account()
    stand_in_auth.answer(verdict(valid=True))

    response = user_service.create_account()

    assert (response.status_code, response.json()["id"]) == (201, 1)


@dataclass(frozen=True)
class Fault:
    """A way for auth-service to fail; ``reply`` ``None`` means nobody listens."""

    id: str
    reply: Reply | None


FAULTS = [
    Fault("slow", slow_reply()),
    Fault("http-500", json_reply({"detail": "boom"}, status=500)),
    Fault("not-json", raw_reply(b"<html>it works</html>", content_type="text/html")),
    Fault("valid-not-boolean", json_reply({"valid": "yes"})),
    Fault("nobody-listening", None),
]


@dataclass(frozen=True)
class Failure:
    """What user-service answered to ``POST /accounts`` while auth-service failed."""

    response: httpx.Response
    user_service: UserService


@pytest.fixture(params=FAULTS, ids=lambda fault: fault.id)
def failure(request: pytest.FixtureRequest) -> Failure:
    fault: Fault = request.param
    if fault.reply is None:
        served: UserService = request.getfixturevalue("cut_off_user_service")
    else:
        request.getfixturevalue("stand_in_auth").answer(fault.reply)
        served = request.getfixturevalue("user_service")
    return Failure(served.create_account(), served)


def test_upstream_failure_is_neither_500_nor_401(failure: Failure) -> None:
    assert failure.response.status_code in {502, 503, 504}


def test_upstream_failure_answers_a_detail_string_and_a_code(failure: Failure) -> None:
    body = failure.response.json()

    assert list(body) == ["detail", "code"]
    assert body["code"] in {"auth_unavailable", "auth_timeout", "auth_bad_response"}
    assert isinstance(body["detail"], str)
    assert body["detail"].strip()


def test_upstream_failure_never_echoes_the_password(failure: Failure) -> None:
    assert PASSWORD not in failure.response.text


def test_upstream_failure_creates_no_account(failure: Failure) -> None:
    assert failure.response.is_error
    assert failure.user_service.has_no_account()


@contextmanager
def sign_up_waiting_on_auth_service(
    base_url: str, stand_in_auth: StandInAuthService, headers: dict[str, str]
) -> Iterator[None]:
    """Send a sign-up over a plain socket; hold it while auth-service has not answered it."""
    address = httpx.URL(base_url)
    body = json.dumps(ACCOUNT).encode()
    authorization = headers["Authorization"].encode()
    with socket.create_connection((address.host, address.port)) as browser:
        browser.sendall(
            b"POST /accounts HTTP/1.1\r\nHost: user-service\r\nContent-Type: application/json\r\n"
            b"Authorization: %s\r\nContent-Length: %d\r\n\r\n%s" % (authorization, len(body), body)
        )
        deadline = time.monotonic() + 10
        while not stand_in_auth.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stand_in_auth.received, "the sign-up never reached auth-service"
        yield


def test_a_client_that_goes_away_during_the_check_stops_the_call_to_auth_service(
    stand_in_auth: StandInAuthService,
) -> None:
    stand_in_auth.answer(slow_reply())
    settings = Settings(auth_url=stand_in_auth.base_url, auth_timeout=10)
    store = InMemoryAccountStore()
    headers = caller_headers(store)
    with (
        serve_in_thread(create_app(settings, account_store=store)) as base_url,
        httpx.Client(base_url=base_url, timeout=10, headers=headers) as client,
    ):
        with sign_up_waiting_on_auth_service(base_url, stand_in_auth, headers):
            pass  # the client hangs up while auth-service has not answered
        started = time.monotonic()
        while time.monotonic() - started < 5 and not _counted(client, status="499"):
            time.sleep(0.02)
        gave_up_after = time.monotonic() - started

    assert len(stand_in_auth.received) == 1
    assert gave_up_after < 3  # not the 10 s the call to auth-service was allowed
    assert asyncio.run(store.get(1)) is None


def _counted(client: httpx.Client, *, status: str) -> bool:
    return f'route="/accounts",status="{status}"' in client.get("/metrics").text


def test_past_its_bound_in_flight_a_sign_up_is_refused_before_its_body_is_read(
    stand_in_auth: StandInAuthService,
) -> None:
    stand_in_auth.answer(slow_reply())
    settings = Settings(auth_url=stand_in_auth.base_url, auth_timeout=10, auth_max_in_flight=1)
    store = InMemoryAccountStore()
    headers = caller_headers(store)
    with (
        serve_in_thread(create_app(settings, account_store=store)) as base_url,
        httpx.Client(base_url=base_url, timeout=10, headers=headers) as client,
        sign_up_waiting_on_auth_service(base_url, stand_in_auth, headers),
    ):
        # Not even JSON: a body that was read would be answered 422.
        refused = client.post(
            "/accounts", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        out_of_time = client.post("/accounts", json=ACCOUNT, headers={"X-Time-Budget-Ms": "5"})

    assert (refused.status_code, refused.json()["code"]) == (503, "overloaded")
    assert refused.headers["Retry-After"] == "1"
    assert (out_of_time.status_code, out_of_time.json()["code"]) == (503, "overloaded")
    assert len(stand_in_auth.received) == 1


def test_every_call_to_auth_service_carries_user_services_token(
    stand_in_auth: StandInAuthService, user_service: UserService
) -> None:
    user_service.create_account()
    user_service.create_account()

    assert [r.authorization for r in stand_in_auth.received] == [f"Bearer {AUTH_TOKEN}"] * 2


@pytest.mark.parametrize("error", ["invalid_token", None], ids=["unknown-token", "no-token"])
def test_a_refused_token_is_503_auth_unavailable_with_retry_after_and_never_401(
    stand_in_auth: StandInAuthService,
    user_service: UserService,
    caplog: pytest.LogCaptureFixture,
    error: str | None,
) -> None:
    stand_in_auth.answer(token_refused(error=error))

    response = user_service.create_account()

    assert (response.status_code, response.json()) == (
        503,
        {"code": "auth_unavailable", "detail": "Sign-up is unavailable; try again later."},
    )
    assert response.headers["Retry-After"] == "60"
    assert "www-authenticate" not in response.headers
    assert user_service.has_no_account()
    [logged] = [record for record in caplog.records if record.name == "user_service"]
    assert logged.levelname == "ERROR"
    assert "USER_SERVICE_AUTH_TOKEN_FILE or USER_SERVICE_AUTH_TOKEN" in logged.getMessage()
    assert AUTH_TOKEN not in caplog.text
    assert AUTH_TOKEN not in response.text


@pytest.fixture(scope="module")
def https_auth(test_tls: TestTls) -> Iterator[StandInAuthService]:
    with serve_stand_in(tls=test_tls) as stand_in:
        yield stand_in


def test_auth_service_is_called_over_https_verified_against_the_ca_file(
    https_auth: StandInAuthService, test_tls: TestTls
) -> None:
    https_auth.reset()

    with serve_user_service(https_auth.base_url, ca_file=test_tls.ca_file) as served:
        response = served.create_account()

    assert (response.status_code, response.json()["username"]) == (201, USERNAME)
    assert [request.authorization for request in https_auth.received] == [f"Bearer {AUTH_TOKEN}"]


def test_a_certificate_another_ca_signed_is_503_auth_unavailable_and_nothing_is_sent(
    https_auth: StandInAuthService, tmp_path: Path
) -> None:
    https_auth.reset()
    other = make_tls(tmp_path)

    with serve_user_service(https_auth.base_url, ca_file=other.ca_file) as served:
        response = served.create_account()
        no_account = served.has_no_account()

    assert (response.status_code, response.json()["code"]) == (503, "auth_unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert no_account
    assert https_auth.received == []
