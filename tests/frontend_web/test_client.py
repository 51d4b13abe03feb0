"""FrontendClient against a stand-in user-service on a real socket."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from frontend_web.client import (
    Account,
    FrontendClient,
    InvalidCredentialsError,
    UserServiceError,
    UserServiceUnavailableError,
)
from tests.support.servers import free_port, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request

USERNAME = "alice"
CREDENTIAL = "correct horse battery staple"


@dataclass
class Reply:
    status: int
    body: object = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    content_type: str | None
    body: object


class StandInUserService:
    """Answers ``POST /accounts`` with a canned reply and records what it received."""

    def __init__(self) -> None:
        self.base_url = ""
        self.reply = Reply(status=201)
        self.received: list[Received] = []
        self.app = Starlette(routes=[Route("/accounts", self._accounts, methods=["POST"])])

    def answer(self, reply: Reply) -> None:
        self.reply = reply
        self.received.clear()

    async def _accounts(self, request: Request) -> Response:
        self.received.append(
            Received(
                method=request.method,
                path=request.url.path,
                content_type=request.headers.get("content-type"),
                body=json.loads(await request.body()),
            )
        )
        reply = self.reply
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.raw is not None:
            return Response(reply.raw, reply.status, reply.headers, media_type="text/plain")
        content = json.dumps(reply.body)
        return Response(content, reply.status, reply.headers, media_type="application/json")


@pytest.fixture(scope="module")
def running_stand_in() -> Iterator[StandInUserService]:
    stand_in = StandInUserService()
    with serve_in_thread(stand_in.app) as base_url:
        stand_in.base_url = base_url
        yield stand_in


@pytest.fixture
def user_service(running_stand_in: StandInUserService) -> StandInUserService:
    running_stand_in.answer(
        Reply(status=201, body={"id": 7, "username": USERNAME, "status": "created"})
    )
    return running_stand_in


def create_account(base_url: str, *, timeout: float = 5.0) -> Account:
    async def run() -> Account:
        async with FrontendClient(base_url, timeout=timeout) as client:
            return await client.create_account(USERNAME, CREDENTIAL)

    return asyncio.run(run())


def test_created_account_is_returned_without_extra_fields(user_service: StandInUserService) -> None:
    user_service.answer(
        Reply(
            status=201,
            body={"id": 7, "username": USERNAME, "status": "created", "email": "a@example.test"},
        )
    )

    assert create_account(user_service.base_url) == Account(
        id=7, username=USERNAME, status="created"
    )


def test_request_posts_exactly_username_and_password_as_json(
    user_service: StandInUserService,
) -> None:
    create_account(user_service.base_url)

    assert user_service.received == [
        Received(
            method="POST",
            path="/accounts",
            content_type="application/json",
            body={"username": USERNAME, "password": CREDENTIAL},
        )
    ]


def test_trailing_slash_of_base_url_is_ignored(user_service: StandInUserService) -> None:
    create_account(f"{user_service.base_url}/")

    assert [request.path for request in user_service.received] == ["/accounts"]


def test_rejected_credentials_raise_invalid_credentials_error(
    user_service: StandInUserService,
) -> None:
    user_service.answer(Reply(status=401, body={"detail": "Invalid credentials"}))

    with pytest.raises(InvalidCredentialsError) as caught:
        create_account(user_service.base_url)

    assert (caught.value.status, caught.value.detail) == (401, "Invalid credentials")


def test_validation_error_detail_names_the_field(user_service: StandInUserService) -> None:
    user_service.answer(
        Reply(
            status=422,
            body={
                "detail": [
                    {
                        "type": "string_too_short",
                        "loc": ["body", "password"],
                        "msg": "String should have at least 40 characters",
                        "input": CREDENTIAL,
                        "ctx": {"min_length": 40},
                    }
                ]
            },
        )
    )

    with pytest.raises(UserServiceError) as caught:
        create_account(user_service.base_url)

    assert caught.value.status == 422
    assert caught.value.detail == "password: String should have at least 40 characters"


def test_validation_errors_of_several_fields_are_all_reported(
    user_service: StandInUserService,
) -> None:
    user_service.answer(
        Reply(
            status=422,
            body={
                "detail": [
                    {"loc": ["body", "username"], "msg": "Field required"},
                    {"loc": ["body", "password"], "msg": "Field required"},
                ]
            },
        )
    )

    with pytest.raises(UserServiceError) as caught:
        create_account(user_service.base_url)

    assert caught.value.detail == "username: Field required; password: Field required"


def test_error_message_never_contains_the_password(user_service: StandInUserService) -> None:
    user_service.answer(
        Reply(
            status=422,
            body={
                "detail": [{"loc": ["body", "password"], "msg": "Too weak", "input": CREDENTIAL}]
            },
        )
    )

    with pytest.raises(UserServiceError) as caught:
        create_account(user_service.base_url)

    assert str(caught.value) == "user-service answered 422: password: Too weak"
    assert CREDENTIAL not in repr(caught.value)


def test_server_error_keeps_its_status(user_service: StandInUserService) -> None:
    user_service.answer(Reply(status=500, body={"detail": "Internal Server Error"}))

    with pytest.raises(UserServiceError) as caught:
        create_account(user_service.base_url)

    assert type(caught.value) is UserServiceError
    assert (caught.value.status, caught.value.detail) == (500, "Internal Server Error")


def test_error_without_json_detail_is_described_by_its_reason(
    user_service: StandInUserService,
) -> None:
    user_service.answer(Reply(status=502, raw=b"<html>upstream down</html>"))

    with pytest.raises(UserServiceError) as caught:
        create_account(user_service.base_url)

    assert (caught.value.status, caught.value.detail) == (502, "Bad Gateway")


def test_unavailable_service_keeps_retry_after(user_service: StandInUserService) -> None:
    user_service.answer(
        Reply(status=503, body={"detail": "Try again later"}, headers={"Retry-After": "30"})
    )

    with pytest.raises(UserServiceUnavailableError) as caught:
        create_account(user_service.base_url)

    assert (caught.value.status, caught.value.retry_after) == (503, 30)
    assert str(caught.value) == "user-service answered 503: Try again later (retry after 30 s)"


def test_retry_after_given_as_http_date_becomes_seconds(user_service: StandInUserService) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    user_service.answer(
        Reply(
            status=503,
            body={"detail": "Down"},
            headers={"Retry-After": format_datetime(when, usegmt=True)},
        )
    )

    with pytest.raises(UserServiceUnavailableError) as caught:
        create_account(user_service.base_url)

    assert caught.value.retry_after in range(110, 121)


def test_unavailable_service_without_retry_after_has_none(
    user_service: StandInUserService,
) -> None:
    user_service.answer(Reply(status=503, body={"detail": "Try again later"}))

    with pytest.raises(UserServiceUnavailableError) as caught:
        create_account(user_service.base_url)

    assert caught.value.retry_after is None


def test_refused_connection_raises_unavailable_error() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(UserServiceUnavailableError) as caught:
        create_account(base_url)

    assert caught.value.status is None
    assert base_url in str(caught.value)


def test_slow_answer_raises_unavailable_error(user_service: StandInUserService) -> None:
    user_service.answer(Reply(status=201, body={}, delay=1.0))

    with pytest.raises(UserServiceUnavailableError) as caught:
        create_account(user_service.base_url, timeout=0.2)

    assert caught.value.status is None
    assert "did not answer within 0.2 s" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"username": USERNAME, "status": "created"},
        {"id": "7", "username": USERNAME, "status": "created"},
        {"id": True, "username": USERNAME, "status": "created"},
        {"id": 7, "username": None, "status": "created"},
        [7, USERNAME, "created"],
        None,
    ],
    ids=["missing-id", "string-id", "boolean-id", "null-username", "list", "null"],
)
def test_success_without_well_formed_account_raises_error(
    user_service: StandInUserService, body: object
) -> None:
    user_service.answer(Reply(status=201, body=body))

    with pytest.raises(UserServiceError, match="without a well-formed account") as caught:
        create_account(user_service.base_url)

    assert caught.value.status == 201


def test_unopened_client_raises_runtime_error(user_service: StandInUserService) -> None:
    client = FrontendClient(user_service.base_url)

    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(client.create_account(USERNAME, CREDENTIAL))


def test_closed_client_raises_runtime_error(user_service: StandInUserService) -> None:
    async def use_after_close() -> None:
        client = FrontendClient(user_service.base_url)
        async with client:
            pass
        await client.create_account(USERNAME, CREDENTIAL)

    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(use_after_close())


def test_opening_an_open_client_raises_runtime_error() -> None:
    async def open_twice() -> None:
        async with FrontendClient("http://127.0.0.1:1") as client:
            await client.open()

    with pytest.raises(RuntimeError, match="already open"):
        asyncio.run(open_twice())


def test_non_positive_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        FrontendClient("http://127.0.0.1:1", timeout=0)
