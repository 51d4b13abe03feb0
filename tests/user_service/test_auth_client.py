"""AuthClient against a stand-in auth-service on a real socket."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.user_service.stand_in_auth import (
    Reply,
    StandInAuthService,
    json_reply,
    raw_reply,
    slow_reply,
    trickling_reply,
    verdict,
)
from user_service.auth_client import (
    MAX_ANSWER_BYTES,
    AuthClient,
    AuthServiceBadResponseError,
    AuthServiceError,
    AuthServiceOverloadedError,
    AuthServiceRateLimitedError,
    AuthServiceTimeoutError,
    AuthServiceUnavailableError,
)

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
TIMEOUT = 0.3


def validate(base_url: str, username: str = USERNAME, password: str = PASSWORD) -> bool:
    """Open a client on ``base_url``, ask it once, close it."""

    async def run() -> bool:
        async with AuthClient(base_url, connect_timeout=TIMEOUT, timeout=TIMEOUT) as client:
            return await client.validate_credentials(username, password)

    return asyncio.run(run())


@pytest.mark.parametrize("valid", [True, False])
def test_returns_the_verdict_of_auth_service(
    stand_in_auth: StandInAuthService,
    valid: bool,  # noqa: FBT001
) -> None:
    stand_in_auth.answer(verdict(valid=valid))

    assert validate(stand_in_auth.base_url) is valid


def test_fields_besides_valid_are_ignored(stand_in_auth: StandInAuthService) -> None:
    stand_in_auth.answer(json_reply({"valid": False, "subject": "bob", "roles": ["admin"]}))

    assert validate(stand_in_auth.base_url) is False


def test_posts_exactly_username_and_password_as_json(stand_in_auth: StandInAuthService) -> None:
    validate(stand_in_auth.base_url)

    [request] = stand_in_auth.received
    assert (request.method, request.path, request.content_type) == (
        "POST",
        "/auth/validate",
        "application/json",
    )
    assert request.json() == {"username": USERNAME, "password": PASSWORD}


@pytest.mark.parametrize(
    ("suffix", "path"),
    [("", "/auth/validate"), ("/", "/auth/validate"), ("/prefix/", "/prefix/auth/validate")],
    ids=["bare", "trailing-slash", "path-prefix"],
)
def test_validate_path_is_appended_to_the_base_url(
    stand_in_auth: StandInAuthService, suffix: str, path: str
) -> None:
    validate(stand_in_auth.base_url + suffix)

    assert [request.path for request in stand_in_auth.received] == [path]


def test_one_open_client_answers_several_calls(stand_in_auth: StandInAuthService) -> None:
    async def run() -> list[bool]:
        async with AuthClient(stand_in_auth.base_url, timeout=TIMEOUT) as client:
            first = await client.validate_credentials(USERNAME, PASSWORD)
            stand_in_auth.answer(verdict(valid=False))
            second = await client.validate_credentials(USERNAME, "guess")
            return [first, second]

    assert asyncio.run(run()) == [True, False]
    assert [request.json() for request in stand_in_auth.received] == [
        {"username": USERNAME, "password": PASSWORD},
        {"username": USERNAME, "password": "guess"},
    ]


def test_unopened_client_raises_runtime_error(stand_in_auth: StandInAuthService) -> None:
    client = AuthClient(stand_in_auth.base_url)

    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(client.validate_credentials(USERNAME, PASSWORD))
    assert stand_in_auth.received == []


def test_closed_client_raises_runtime_error(stand_in_auth: StandInAuthService) -> None:
    async def use_after_close() -> bool:
        async with AuthClient(stand_in_auth.base_url) as client:
            pass
        return await client.validate_credentials(USERNAME, PASSWORD)

    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(use_after_close())
    assert stand_in_auth.received == []


def test_client_can_be_opened_again_after_close(stand_in_auth: StandInAuthService) -> None:
    async def reopen() -> bool:
        client = AuthClient(stand_in_auth.base_url, timeout=TIMEOUT)
        async with client:
            pass
        async with client:
            return await client.validate_credentials(USERNAME, PASSWORD)

    assert asyncio.run(reopen()) is True


def test_nobody_listening_is_unavailable(unreachable_auth_url: str) -> None:
    with pytest.raises(AuthServiceUnavailableError):
        validate(unreachable_auth_url)


def test_slow_answer_is_a_timeout(stand_in_auth: StandInAuthService) -> None:
    stand_in_auth.answer(slow_reply())
    started = time.monotonic()

    with pytest.raises(AuthServiceTimeoutError):
        validate(stand_in_auth.base_url)
    assert time.monotonic() - started < 2.0


def test_body_that_stops_half_way_is_a_timeout(stand_in_auth: StandInAuthService) -> None:
    stand_in_auth.answer(trickling_reply())

    with pytest.raises(AuthServiceTimeoutError):
        validate(stand_in_auth.base_url)


@pytest.mark.parametrize(
    "reply",
    [
        json_reply({"valid": True}, status=500),
        json_reply({"valid": True}, status=502),
        json_reply({"valid": True}, status=201),
        json_reply({"detail": "Not Found"}, status=404),
        json_reply({"valid": True}, status=302),
    ],
    ids=["500", "502", "201", "404", "302"],
)
def test_status_other_than_200_is_a_bad_response(
    stand_in_auth: StandInAuthService, reply: Reply
) -> None:
    stand_in_auth.answer(reply)

    with pytest.raises(AuthServiceBadResponseError, match=f"HTTP {reply.status}"):
        validate(stand_in_auth.base_url)


@pytest.mark.parametrize(
    "reply",
    [
        raw_reply(b"<html>Bad Gateway</html>", content_type="text/html"),
        raw_reply(b'{"valid": tru', content_type="application/json"),
        raw_reply(b"\xff\xfe\x00", content_type="application/json"),
    ],
    ids=["html", "truncated-json", "not-utf8"],
)
def test_body_that_is_not_json_is_a_bad_response(
    stand_in_auth: StandInAuthService, reply: Reply
) -> None:
    stand_in_auth.answer(reply)

    with pytest.raises(AuthServiceBadResponseError):
        validate(stand_in_auth.base_url)


@pytest.mark.parametrize(
    "reply",
    [
        json_reply({"valid": "yes"}),
        json_reply({"valid": 1}),
        json_reply({"valid": None}),
        json_reply({"subject": "alice"}),
        json_reply([{"valid": True}]),
        json_reply(True),  # noqa: FBT003
        raw_reply(b"", content_type="application/json"),
    ],
    ids=["string", "number", "null", "missing", "list", "bare-true", "empty-body"],
)
def test_answer_without_boolean_valid_is_a_bad_response(
    stand_in_auth: StandInAuthService, reply: Reply
) -> None:
    stand_in_auth.answer(reply)

    with pytest.raises(AuthServiceBadResponseError):
        validate(stand_in_auth.base_url)


@pytest.mark.parametrize(
    "error",
    [
        AuthServiceUnavailableError,
        AuthServiceTimeoutError,
        AuthServiceBadResponseError,
        AuthServiceRateLimitedError,
        AuthServiceOverloadedError,
    ],
)
def test_every_failure_is_an_auth_service_error(error: type[Exception]) -> None:
    assert issubclass(error, AuthServiceError)


def in_an_hour() -> str:
    """An HTTP-date an hour from now."""
    return format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("900", 900, 900),
        (" 7 ", 7, 7),
        (None, 60, 60),
        ("soon", 60, 60),
        ("\u00b2", 60, 60),  # a digit to str.isdigit(), not to int()
        ("-5", 60, 60),
        ("in-an-hour", 3590, 3600),
    ],
    ids=["seconds", "padded", "absent", "word", "superscript-two", "negative", "http-date"],
)
def test_429_is_rate_limited_for_the_seconds_of_its_retry_after(
    stand_in_auth: StandInAuthService, retry_after: str | None, low: int, high: int
) -> None:
    value = in_an_hour() if retry_after == "in-an-hour" else retry_after
    headers = () if value is None else (("Retry-After", value),)
    stand_in_auth.answer(Reply(status=429, body=b"{}", headers=headers))

    with pytest.raises(AuthServiceRateLimitedError) as caught:
        validate(stand_in_auth.base_url)

    assert low <= caught.value.retry_after <= high


def test_answer_over_the_size_limit_is_a_bad_response(stand_in_auth: StandInAuthService) -> None:
    padding = "x" * (MAX_ANSWER_BYTES + 1)
    stand_in_auth.answer(json_reply({"valid": True, "padding": padding}))

    with pytest.raises(AuthServiceBadResponseError, match="over"):
        validate(stand_in_auth.base_url)


def test_answer_just_below_the_size_limit_is_read(stand_in_auth: StandInAuthService) -> None:
    padding = "x" * (MAX_ANSWER_BYTES - 100)
    stand_in_auth.answer(json_reply({"valid": True, "padding": padding}))

    assert validate(stand_in_auth.base_url) is True


@pytest.mark.parametrize(
    "base_url", ["ftp://auth.test", "http://", "not a url", "", "127.0.0.1:8001", "/auth"]
)
def test_a_base_url_that_is_not_http_with_a_host_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        AuthClient(base_url)


def test_bounds_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AuthClient("http://127.0.0.1:8001", max_in_flight=0)
    with pytest.raises(ValueError, match="at least 1"):
        AuthClient("http://127.0.0.1:8001", max_connections=0)
