"""The open-loop generator sends on schedule whatever the answers, and the spike reads it right."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import pytest
from bench.open_loop import ANSWERED, GAVE_UP, run
from bench.spike import SpikePhase, check_accounts, summarise
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.servers import HOST, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request

RATE = 40.0
SECONDS = 0.5
PREFIX = "tolx"


async def _accounts(request: Request) -> JSONResponse:
    """201 for one request in three, 503 with Retry-After for the next, 503 without for the last."""
    name = (await request.json())["username"]
    number = name.removeprefix(f"{PREFIX}n")
    if not number.isdigit() or int(number) % 3 == 0:
        return JSONResponse({"id": 1, "username": name, "status": "created"}, status_code=201)
    if int(number) % 3 == 1:
        return JSONResponse({"code": "overloaded"}, status_code=503, headers={"Retry-After": "2"})
    return JSONResponse({"code": "overloaded"}, status_code=503)


@pytest.fixture(scope="module")
def scripted_service() -> Iterator[str]:
    with serve_in_thread(
        Starlette(routes=[Route("/accounts", _accounts, methods=["POST"])])
    ) as url:
        yield url


@pytest.fixture
def silent_service() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(64)
        yield f"http://{HOST}:{listener.getsockname()[1]}"


def _run(url: str, *, client_timeout: float) -> dict[str, object]:
    return asyncio.run(
        run(
            url,
            rate=RATE,
            seconds=SECONDS,
            prefix=PREFIX,
            client_timeout=client_timeout,
            drain=0.1,
        )
    )


def test_every_request_is_sent_on_schedule_and_its_answer_kept(scripted_service: str) -> None:
    raw = _run(scripted_service, client_timeout=5.0)

    requests = raw["requests"]
    assert isinstance(requests, list)
    assert len(requests) == RATE * SECONDS
    dues = [request["due"] for request in requests]
    assert dues == sorted(dues)
    assert dues[-1] == pytest.approx((len(requests) - 1) / RATE, abs=0.01)
    assert all(request["outcome"] == ANSWERED for request in requests)

    phase = SpikePhase(1, RATE, SECONDS, PREFIX)
    summarise(phase, raw, ramp=0.0)

    assert phase.requests == 20
    # Of 1..20: 3, 6 ... 18 are 201 (6); 1, 4 ... 19 (7) and 2, 5 ... 20 (7) are 503.
    assert phase.statuses == {201: 6, 503: 14}
    assert phase.missing_retry_after == 7
    assert phase.unexpected == 7
    assert phase.wrong_bodies == 0
    assert phase.gave_up == phase.connection_errors == 0
    assert phase.admitted == 6
    assert phase.admitted_p99_ms is not None
    assert phase.rejected_p99_ms is not None
    assert phase.probe_served  # the probe's name has no number: the script creates it
    assert len(phase.created) == 7  # the probe included
    assert len(phase.not_created) == 14


def test_accounts_are_checked_against_the_answers(scripted_service: str) -> None:
    phase = SpikePhase(1, RATE, SECONDS, PREFIX)
    summarise(phase, _run(scripted_service, client_timeout=5.0), ramp=0.0)
    stored = dict.fromkeys(phase.created, 1)

    assert check_accounts(phase, stored).consistent

    missing = check_accounts(phase, dict.fromkeys(phase.created[1:], 1))
    assert (missing.lost, missing.consistent) == (1, False)
    refused = phase.not_created[0]
    created_anyway = check_accounts(phase, {**stored, refused: 1})
    assert (created_anyway.answered_otherwise, created_anyway.consistent) == (1, False)
    stranger = check_accounts(phase, {**stored, f"{PREFIX}n999": 1})
    assert (stranger.unknown, stranger.consistent) == (1, False)


def test_a_service_that_never_answers_is_given_up_on(silent_service: str) -> None:
    raw = _run(silent_service, client_timeout=0.3)

    phase = SpikePhase(1, RATE, SECONDS, PREFIX)
    summarise(phase, raw, ramp=0.0)

    assert phase.gave_up == phase.requests == 20
    assert phase.statuses == {}
    assert phase.unexpected == 20
    assert phase.goodput == 0
    assert phase.probe_status is None
    assert phase.probe_outcome == GAVE_UP
    assert not phase.probe_served
    # Nobody waited for an answer: an account made for one of them is allowed, and counted.
    accounts = check_accounts(phase, {f"{PREFIX}n1": 1})
    assert (accounts.given_up, accounts.consistent) == (1, True)
