"""FrontendClient's idempotency keys, 409s, 422 fields, request ids and metrics.

Against a stand-in user-service on a real socket.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from frontend_web.client import (
    Account,
    FieldError,
    FrontendClient,
    InvalidRequestError,
    RequestInProgressError,
    UsernameTakenError,
    UserServiceError,
)
from servicekit.logs import request_id
from servicekit.metrics import Metrics
from tests.frontend_web.conftest import PASSWORD
from tests.frontend_web.stand_in_user_service import (
    IN_PROGRESS,
    IN_PROGRESS_TEXT,
    TAKEN,
    TAKEN_TEXT,
    created,
    detail,
    problem,
)

if TYPE_CHECKING:
    from tests.frontend_web.stand_in_user_service import Reply, StandInUserService

KEY = "form-key-0123456789abcdefghijklmnop"


def create(base_url: str, *, key: str | None = KEY, metrics: Metrics | None = None) -> Account:
    async def run() -> Account:
        async with FrontendClient(base_url, metrics=metrics) as client:
            return await client.create_account("alice", PASSWORD, idempotency_key=key)

    return asyncio.run(run())


def test_idempotency_key_is_sent_as_a_header(user_service: StandInUserService) -> None:
    create(user_service.base_url)

    assert [r.idempotency_key for r in user_service.received] == [KEY]


def test_no_key_sends_no_header(user_service: StandInUserService) -> None:
    create(user_service.base_url, key=None)

    assert [r.idempotency_key for r in user_service.received] == [None]


def test_replayed_answer_is_marked(user_service: StandInUserService) -> None:
    user_service.script(created(4, replayed=True))

    assert create(user_service.base_url) == Account(4, "alice", "created", replayed=True)


def test_fresh_answer_is_not_marked_replayed(user_service: StandInUserService) -> None:
    assert create(user_service.base_url).replayed is False


def test_conflict_of_an_in_flight_key_is_request_in_progress(
    user_service: StandInUserService,
) -> None:
    user_service.script(IN_PROGRESS)

    with pytest.raises(RequestInProgressError) as caught:
        create(user_service.base_url)

    assert not isinstance(caught.value, UsernameTakenError)
    assert (caught.value.status, caught.value.code) == (409, "idempotency_key_in_progress")


def test_taken_username_with_a_key_is_still_username_taken(
    user_service: StandInUserService,
) -> None:
    user_service.script(TAKEN)

    with pytest.raises(UsernameTakenError):
        create(user_service.base_url)


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        (IN_PROGRESS_TEXT, "username_taken", UsernameTakenError),
        (TAKEN_TEXT, "idempotency_key_in_progress", RequestInProgressError),
    ],
    ids=["in-progress-text-taken-code", "taken-text-in-progress-code"],
)
def test_a_409_is_told_apart_by_its_code_not_its_text(
    user_service: StandInUserService, text: str, code: str, expected: type[UserServiceError]
) -> None:
    user_service.script(problem(409, text, code))

    with pytest.raises(UserServiceError) as caught:
        create(user_service.base_url)

    assert type(caught.value) is expected
    assert (caught.value.status, caught.value.code) == (409, code)


@pytest.mark.parametrize(
    "reply",
    [detail(409, IN_PROGRESS_TEXT), detail(409, TAKEN_TEXT), problem(409, TAKEN_TEXT, "other")],
    ids=["in-progress-text", "taken-text", "unknown-code"],
)
def test_a_409_without_a_known_code_is_neither_conflict(
    user_service: StandInUserService, reply: Reply
) -> None:
    user_service.script(reply)

    with pytest.raises(UserServiceError) as caught:
        create(user_service.base_url)

    assert not isinstance(caught.value, (UsernameTakenError, RequestInProgressError))
    assert caught.value.status == 409


def test_the_in_progress_code_is_read_without_a_key_sent(
    user_service: StandInUserService,
) -> None:
    user_service.script(IN_PROGRESS)

    with pytest.raises(RequestInProgressError):
        create(user_service.base_url, key=None)


def test_validation_error_keeps_its_fields(user_service: StandInUserService) -> None:
    user_service.script(
        detail(
            422,
            [
                {"loc": ["body", "username"], "msg": "too long", "type": "x"},
                {"loc": ["body", "password"], "msg": "Field required", "type": "missing"},
                {"loc": ["body"], "msg": "not an object", "type": "x"},
            ],
        )
    )

    with pytest.raises(InvalidRequestError) as caught:
        create(user_service.base_url)

    assert caught.value.field_errors == (
        FieldError("username", "too long"),
        FieldError("password", "Field required"),
        FieldError("body", "not an object"),
    )
    assert caught.value.detail == (
        "username: too long; password: Field required; body: not an object"
    )


def test_validation_error_as_a_sentence_has_no_fields(user_service: StandInUserService) -> None:
    user_service.script(detail(422, "Idempotency-Key must be 1 to 255 visible ASCII characters."))

    with pytest.raises(InvalidRequestError) as caught:
        create(user_service.base_url)

    assert caught.value.field_errors == ()
    assert isinstance(caught.value, UserServiceError)


def test_request_id_of_the_request_being_served_is_forwarded(
    user_service: StandInUserService,
) -> None:
    token = request_id.set("trace-7")
    try:
        create(user_service.base_url)
    finally:
        request_id.reset(token)

    assert [r.headers.get("x-request-id") for r in user_service.received] == ["trace-7"]


def test_calls_are_counted_by_outcome(user_service: StandInUserService) -> None:
    metrics = Metrics()
    user_service.script(created(), created(replayed=True), TAKEN)

    create(user_service.base_url, metrics=metrics)
    create(user_service.base_url, metrics=metrics)
    with pytest.raises(UsernameTakenError):
        create(user_service.base_url, metrics=metrics)

    def count(outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "upstream_requests_total", {"upstream": "user-service", "outcome": outcome}
        )

    assert (count("created"), count("replayed"), count("UsernameTakenError")) == (1, 1, 1)
    assert (
        metrics.registry.get_sample_value(
            "upstream_request_duration_seconds_count", {"upstream": "user-service"}
        )
        == 3
    )
