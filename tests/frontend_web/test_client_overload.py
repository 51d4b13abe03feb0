"""FrontendClient under overload: the busy error, the time budget, and the bound on calls in flight.

Against a stand-in user-service on a real socket.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from frontend_web.client import (
    Account,
    FrontendClient,
    SignUpBusyError,
    UserServiceError,
    UserServiceUnavailableError,
)
from servicekit.deadlines import deadline
from servicekit.metrics import Metrics
from tests.frontend_web.conftest import PASSWORD
from tests.frontend_web.stand_in_user_service import (
    Gate,
    Reply,
    created,
    detail,
    overloaded,
)

if TYPE_CHECKING:
    from tests.frontend_web.stand_in_user_service import StandInUserService

KEY = "form-key-0123456789abcdefghijklmnop"
# Wide, for two busy cores: a refusal made without calling takes microseconds.
AT_ONCE = 1.0


def create(
    base_url: str,
    *,
    timeout: float = 5.0,
    budget: float | None = None,
    metrics: Metrics | None = None,
) -> Account:
    """Create an account, as while serving a request whose caller gave ``budget`` seconds."""

    async def run() -> Account:
        if budget is not None:
            deadline.set(time.monotonic() + budget)
        async with FrontendClient(base_url, timeout=timeout, metrics=metrics) as client:
            return await client.create_account("alice", PASSWORD, idempotency_key=KEY)

    return asyncio.run(run())


# --- the busy error ------------------------------------------------------------------------


def test_overloaded_503_is_the_busy_error_with_its_retry_after(
    user_service: StandInUserService,
) -> None:
    user_service.script(overloaded("7"))

    with pytest.raises(SignUpBusyError) as caught:
        create(user_service.base_url)

    assert isinstance(caught.value, UserServiceUnavailableError)
    assert (caught.value.status, caught.value.retry_after) == (503, 7)
    assert caught.value.called is True
    assert caught.value.detail == "auth-service is overloaded"
    assert PASSWORD not in repr(caught.value)
    assert PASSWORD not in str(caught.value)


def test_overloaded_503_without_retry_after_is_busy_without_a_wait(
    user_service: StandInUserService,
) -> None:
    user_service.script(overloaded(None))

    with pytest.raises(SignUpBusyError) as caught:
        create(user_service.base_url)

    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    "reply",
    [
        detail(503, "auth-service is unavailable", {"Retry-After": "5"}),
        Reply(503, {"detail": "down", "code": "unavailable"}, {"Retry-After": "5"}),
        Reply(503, {"detail": "down", "code": ["overloaded"]}, {"Retry-After": "5"}),
        Reply(503, ["overloaded"], {"Retry-After": "5"}),
        Reply(503, "overloaded", {"Retry-After": "5"}),
    ],
    ids=["no-code", "other-code", "code-not-a-string", "list-body", "string-body"],
)
def test_other_503s_stay_unavailable_not_busy(
    user_service: StandInUserService, reply: Reply
) -> None:
    user_service.script(reply)

    with pytest.raises(UserServiceUnavailableError) as caught:
        create(user_service.base_url)

    assert type(caught.value) is UserServiceUnavailableError
    assert (caught.value.status, caught.value.retry_after) == (503, 5)


def test_overloaded_code_on_another_status_is_not_busy(user_service: StandInUserService) -> None:
    user_service.script(Reply(500, {"detail": "boom", "code": "overloaded"}))

    with pytest.raises(UserServiceError) as caught:
        create(user_service.base_url)

    assert type(caught.value) is UserServiceError
    assert caught.value.status == 500


@pytest.mark.parametrize(("value", "seconds"), [("0", 0), ("²", None), ("soon", None)])
def test_retry_after_of_the_busy_error_is_read_strictly(
    user_service: StandInUserService, value: str, seconds: int | None
) -> None:
    user_service.script(overloaded(value))

    with pytest.raises(SignUpBusyError) as caught:
        create(user_service.base_url)

    assert caught.value.retry_after == seconds


# --- the time budget -----------------------------------------------------------------------


def test_without_a_deadline_the_budget_is_the_clients_timeout(
    user_service: StandInUserService,
) -> None:
    create(user_service.base_url, timeout=2.5)

    assert [r.budget_ms for r in user_service.received] == ["2500"]


def test_a_nearer_deadline_is_sent_as_the_budget(user_service: StandInUserService) -> None:
    create(user_service.base_url, timeout=5.0, budget=1.0)

    [received] = user_service.received
    assert received.budget_ms is not None
    assert received.budget_ms.isdigit()
    assert 0 < int(received.budget_ms) <= 1000


def test_the_budget_is_the_calls_timeout(user_service: StandInUserService) -> None:
    gate = Gate()
    user_service.script(Reply(201, created().body, gate=gate))
    started = time.monotonic()
    try:
        with pytest.raises(UserServiceUnavailableError, match="did not answer within") as caught:
            create(user_service.base_url, timeout=10.0, budget=0.3)
        elapsed = time.monotonic() - started
    finally:
        gate.open()

    assert caught.value.status is None
    assert not isinstance(caught.value, SignUpBusyError)
    assert len(user_service.received) == 1
    assert elapsed < 5.0


@pytest.mark.parametrize("budget", [0.0, 0.01, -1.0], ids=["zero", "too-little", "passed"])
def test_too_little_budget_is_busy_without_calling(
    user_service: StandInUserService, budget: float
) -> None:
    metrics = Metrics()

    with pytest.raises(SignUpBusyError) as caught:
        create(user_service.base_url, budget=budget, metrics=metrics)

    assert (caught.value.called, caught.value.status, caught.value.retry_after) == (False, None, 1)
    assert user_service.received == []
    assert (
        metrics.registry.get_sample_value(
            "upstream_requests_total", {"upstream": "user-service", "outcome": "shed"}
        )
        == 1
    )


# --- calls in flight -----------------------------------------------------------------------


def test_one_call_past_the_bound_is_shed_at_once_without_calling(
    user_service: StandInUserService,
) -> None:
    gate = Gate()
    user_service.script(Reply(201, created().body, gate=gate))
    metrics = Metrics()

    async def run() -> tuple[list[Account], SignUpBusyError, float, int, int, Account]:
        async with FrontendClient(
            user_service.base_url, max_in_flight=2, metrics=metrics
        ) as client:
            held = [asyncio.create_task(client.create_account("alice", PASSWORD)) for _ in range(2)]
            try:
                await asyncio.to_thread(gate.wait_for_arrivals, 2)
                in_flight = client.in_flight
                started = time.monotonic()
                with pytest.raises(SignUpBusyError) as caught:
                    await client.create_account("alice", PASSWORD)
                took = time.monotonic() - started
                received_while_full = len(user_service.received)
            finally:
                gate.open()
            accounts = await asyncio.gather(*held)
            after = await client.create_account("alice", PASSWORD)
            return accounts, caught.value, took, in_flight, received_while_full, after

    accounts, shed, took, in_flight, received_while_full, after = asyncio.run(run())

    assert in_flight == 2
    assert (shed.called, shed.status, shed.retry_after) == (False, None, 1)
    assert took < AT_ONCE
    assert received_while_full == 2
    assert [account.id for account in accounts] == [1, 1]
    assert after.id == 1
    assert len(user_service.received) == 3

    def count(outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "upstream_requests_total", {"upstream": "user-service", "outcome": outcome}
        )

    assert (count("created"), count("shed")) == (3, 1)


def test_calls_in_flight_are_freed_by_failures_too(user_service: StandInUserService) -> None:
    user_service.script(overloaded(), detail(500, "boom"), created())

    async def run() -> tuple[int, Account]:
        async with FrontendClient(user_service.base_url, max_in_flight=1) as client:
            for error in (SignUpBusyError, UserServiceError):
                with pytest.raises(error):
                    await client.create_account("alice", PASSWORD)
            return client.in_flight, await client.create_account("alice", PASSWORD)

    in_flight, account = asyncio.run(run())

    assert in_flight == 0
    assert account.id == 1


def test_every_admitted_call_gets_a_connection_at_once(user_service: StandInUserService) -> None:
    # More than aiohttp's default pool of 100: none of them may wait for a connection.
    bound = 105
    gate = Gate()
    user_service.script(Reply(201, created().body, gate=gate))

    async def run() -> list[Account]:
        async with FrontendClient(user_service.base_url, max_in_flight=bound) as client:
            held = [
                asyncio.create_task(client.create_account("alice", PASSWORD)) for _ in range(bound)
            ]
            try:
                await asyncio.to_thread(gate.wait_for_arrivals, bound)
            finally:
                gate.open()
            return await asyncio.gather(*held)

    assert len(asyncio.run(run())) == bound


def test_max_in_flight_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_in_flight must be at least 1"):
        FrontendClient("http://127.0.0.1:1", max_in_flight=0)
