"""AuthClient under overload: auth-service's 503, the time budget, and the bound on calls in flight.

auth-service is a small aiohttp server on a real socket that records the
headers of each request and can hold requests until the test releases them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Self

import httpx
import pytest
from aiohttp import web

from servicekit.deadlines import BUDGET_HEADER, deadline
from servicekit.metrics import Metrics
from tests.support.log_scan import register_secret
from tests.support.servers import HOST
from tests.user_service.stand_in_auth import Reply, StandInAuthService
from user_service import create_app
from user_service.accounts import InMemoryAccountStore
from user_service.auth_client import (
    AuthClient,
    AuthServiceBadResponseError,
    AuthServiceOverloadedError,
)
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Coroutine

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
ACCOUNT = {"username": USERNAME, "password": PASSWORD}
TOO_LITTLE = "too little of the request's time budget is left"


class RecordingAuthService:
    """``POST /auth/validate`` answering ``{"valid": true}``, recording each request's headers.

    While :attr:`hold` is clear, requests wait for it before they are answered.
    """

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.overloaded = False
        self.hold = asyncio.Event()
        self.hold.set()
        self.url = ""
        self._arrival = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _validate(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.append(dict(request.headers))
        self._arrival.set()
        await self.hold.wait()
        if self.overloaded:
            return web.json_response(
                {"code": "overloaded"}, status=503, headers={"Retry-After": "1"}
            )
        return web.json_response({"valid": True, "subject": USERNAME})

    async def until_received(self, count: int, within: float = 5.0) -> None:
        """Return once ``count`` requests have arrived, or fail after ``within`` seconds."""
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self._arrival.clear()
                await self._arrival.wait()

    def budgets(self) -> list[int]:
        """The budget each request carried, in milliseconds."""
        return [int(headers[BUDGET_HEADER]) for headers in self.received]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/auth/validate", self._validate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        _, port = self._runner.addresses[0]
        self.url = f"http://{HOST}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.hold.set()
        assert self._runner is not None
        await self._runner.cleanup()


async def validate(client: AuthClient) -> bool:
    return await client.validate_credentials(USERNAME, PASSWORD)


async def in_a_request_with(budget: float, call: Coroutine[object, object, bool]) -> bool:
    """Run ``call`` as ServiceMiddleware runs a request whose caller will wait ``budget`` s."""

    async def request() -> bool:
        deadline.set(time.monotonic() + budget)
        return await call

    return await asyncio.create_task(request())


def in_seconds(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("7", 7, 7),
        (None, 1, 1),
        ("0", 1, 1),
        ("\u00b2", 1, 1),
        ("later", 1, 1),
        ("in-30-seconds", 28, 30),
    ],
    ids=["seconds", "absent", "zero", "superscript-two", "word", "http-date"],
)
def test_503_is_overloaded_for_the_seconds_of_its_retry_after(
    stand_in_auth: StandInAuthService, retry_after: str | None, low: int, high: int
) -> None:
    value = in_seconds(30) if retry_after == "in-30-seconds" else retry_after
    headers = () if value is None else (("Retry-After", value),)
    body = b'{"detail": "auth-service is overloaded", "code": "overloaded"}'
    stand_in_auth.answer(Reply(status=503, body=body, headers=headers))

    async def main() -> bool:
        async with AuthClient(stand_in_auth.base_url, retries=2) as client:
            return await validate(client)

    with pytest.raises(AuthServiceOverloadedError) as caught:
        asyncio.run(main())

    assert not isinstance(caught.value, AuthServiceBadResponseError)
    assert low <= caught.value.retry_after <= high
    assert len(stand_in_auth.received) == 1  # a 503 is not retried


def test_each_call_sends_the_time_it_may_take_as_its_budget() -> None:
    async def main() -> list[int]:
        async with (
            RecordingAuthService() as auth,
            AuthClient(auth.url, timeout=3.0) as client,
        ):
            await validate(client)
            await in_a_request_with(1.0, validate(client))
        return auth.budgets()

    own_limit, callers_budget = asyncio.run(main())
    assert 2000 < own_limit <= 3000
    assert 500 < callers_budget <= 1000


@pytest.mark.parametrize("budget", [0.03, 0.0, -1.0], ids=["30ms", "none", "spent"])
def test_a_call_with_too_little_budget_is_refused_without_calling(budget: float) -> None:
    async def main() -> tuple[AuthServiceOverloadedError, list[dict[str, str]]]:
        async with RecordingAuthService() as auth, AuthClient(auth.url) as client:
            with pytest.raises(AuthServiceOverloadedError, match=TOO_LITTLE) as caught:
                await in_a_request_with(budget, validate(client))
        return caught.value, auth.received

    error, received = asyncio.run(main())
    assert error.retry_after == 1
    assert received == []


def test_the_least_budget_worth_calling_with_is_the_client_s_min_budget() -> None:
    async def main() -> list[int]:
        async with (
            RecordingAuthService() as auth,
            AuthClient(auth.url, min_budget=0.5) as client,
        ):
            with pytest.raises(AuthServiceOverloadedError, match=TOO_LITTLE):
                await in_a_request_with(0.3, validate(client))
            assert await in_a_request_with(0.8, validate(client)) is True
        return auth.budgets()

    [budget] = asyncio.run(main())
    assert 500 <= budget <= 800


def test_one_call_more_than_max_in_flight_is_shed_at_once() -> None:
    metrics = Metrics()

    async def main() -> tuple[float, int, list[bool], bool]:
        async with (
            RecordingAuthService() as auth,
            AuthClient(auth.url, max_in_flight=2, metrics=metrics) as client,
        ):
            auth.hold.clear()
            held = [asyncio.create_task(validate(client)) for _ in range(2)]
            await auth.until_received(2)
            started = time.monotonic()
            with pytest.raises(AuthServiceOverloadedError, match="in flight") as caught:
                await validate(client)
            took = time.monotonic() - started
            received_while_full = len(auth.received)
            assert caught.value.retry_after == 1
            auth.hold.set()
            verdicts = list(await asyncio.gather(*held))
            after = await validate(client)  # the bound is free again
        return took, received_while_full, verdicts, after

    took, received_while_full, verdicts, after = asyncio.run(main())
    assert took < 0.5
    assert received_while_full == 2
    assert verdicts == [True, True]
    assert after is True
    sample = metrics.registry.get_sample_value
    labels = {"upstream": "auth-service"}
    assert sample("upstream_requests_total", {**labels, "outcome": "valid"}) == 3
    assert sample("upstream_requests_total", {**labels, "outcome": "AuthServiceOverloadedError"})


def test_max_in_flight_calls_each_get_a_connection_at_once() -> None:
    # The connector is sized to the bound, so no admitted call waits for a connection.
    async def main() -> int:
        async with (
            RecordingAuthService() as auth,
            AuthClient(auth.url, max_in_flight=5) as client,
        ):
            auth.hold.clear()
            held = [asyncio.create_task(validate(client)) for _ in range(5)]
            await auth.until_received(5)
            arrived = len(auth.received)
            auth.hold.set()
            await asyncio.gather(*held)
        return arrived

    assert asyncio.run(main()) == 5


async def _post_through_user_service(
    auth_url: str, headers: dict[str, str]
) -> tuple[httpx.Response, Settings]:
    settings = Settings(auth_url=auth_url)
    store = InMemoryAccountStore()
    app = create_app(settings, account_store=store)
    transport = httpx.ASGITransport(app=app)
    caller = register_secret(await store.clients.issue("frontend-web"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://user-service") as http,
    ):
        headers = {**headers, "Authorization": f"Bearer {caller}"}
        return await http.post("/accounts", json=ACCOUNT, headers=headers), settings


def test_user_service_passes_what_is_left_of_its_caller_s_budget_on() -> None:
    async def main() -> tuple[int, list[int]]:
        async with RecordingAuthService() as auth:
            response, _ = await _post_through_user_service(auth.url, {BUDGET_HEADER: "1000"})
        return response.status_code, auth.budgets()

    status, budgets = asyncio.run(main())
    assert status == 201
    [budget] = budgets
    assert 500 < budget <= 1000


def test_user_service_does_not_call_auth_service_for_a_caller_about_to_give_up() -> None:
    # 30 ms: less than the default least budget worth calling with.
    async def main() -> tuple[int, list[int], float]:
        async with RecordingAuthService() as auth:
            response, settings = await _post_through_user_service(auth.url, {BUDGET_HEADER: "30"})
        return response.status_code, auth.budgets(), settings.auth_min_budget_seconds

    status, budgets, min_budget = asyncio.run(main())
    assert min_budget > 0.03
    assert status == 503
    assert budgets == []


def test_overload_answers_cut_the_limit_and_other_answers_raise_it_back() -> None:
    async def main() -> tuple[list[int], int, int]:
        async with RecordingAuthService() as auth, AuthClient(auth.url, max_in_flight=10) as client:
            auth.overloaded = True
            limits = []
            for _ in range(3):
                with pytest.raises(AuthServiceOverloadedError):
                    await validate(client)
                limits.append(client.in_flight_limit)
            auth.overloaded = False
            await validate(client)
            after_one = client.in_flight_limit
            for _ in range(40):
                await validate(client)
            return limits, after_one, client.in_flight_limit

    limits, after_one, restored = asyncio.run(main())

    assert limits == [9, 8, 7]  # 10 x 0.9, x 0.9, x 0.9: 9.0, 8.1, 7.29
    assert after_one == 7  # one answer raises it by 1/7.29, not by one
    assert restored == 10


def test_overload_answers_to_calls_under_way_together_cut_the_limit_once() -> None:
    async def main() -> tuple[list[bool | BaseException], int]:
        async with RecordingAuthService() as auth, AuthClient(auth.url, max_in_flight=10) as client:
            auth.overloaded = True
            auth.hold.clear()
            calls = [asyncio.create_task(validate(client)) for _ in range(5)]
            await auth.until_received(5)
            auth.hold.set()
            answers = await asyncio.gather(*calls, return_exceptions=True)
            return answers, client.in_flight_limit

    answers, limit = asyncio.run(main())

    assert all(isinstance(answer, AuthServiceOverloadedError) for answer in answers)
    assert limit == 9


def test_past_the_cut_limit_a_call_is_shed_without_calling() -> None:
    async def main() -> int:
        async with RecordingAuthService() as auth, AuthClient(auth.url, max_in_flight=4) as client:
            auth.overloaded = True
            with pytest.raises(AuthServiceOverloadedError):
                await validate(client)  # the limit is now 3
            auth.overloaded = False
            auth.hold.clear()
            held = [asyncio.create_task(validate(client)) for _ in range(3)]
            await auth.until_received(4)
            with pytest.raises(AuthServiceOverloadedError, match="in flight already"):
                await validate(client)
            sent = len(auth.received)
            auth.hold.set()
            await asyncio.gather(*held)
            return sent

    assert asyncio.run(main()) == 4
