"""Overload on the real app and a real socket: admission, time budgets, callers that go away."""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tests.auth_service.conftest import make_settings
from tests.auth_service.serving import metric, serving

if TYPE_CHECKING:
    import httpx

BODY = json.dumps({"username": "nobody", "password": "a guess"}).encode()
# About half a second a check, so that a second request can queue behind the first;
# a target delay long enough that admission, measured on a busy machine, takes both.
SLOW_ARGON2 = {
    "argon2_time_cost": 40,
    "argon2_memory_cost": 8192,
    "hash_workers": 1,
    "target_queue_delay_seconds": 600,
}


def budget(milliseconds: int) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Time-Budget-Ms": str(milliseconds)}


def verifications(client: httpx.Client) -> float:
    return metric(client, "auth_argon2_operations_total", operation="verify")


def pending(client: httpx.Client) -> float:
    return metric(client, "auth_pending_hashes")


def wait_until(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.01)
    msg = f"{what} did not happen within {timeout} s"
    raise AssertionError(msg)


def raw_request(
    client: httpx.Client, body: bytes = BODY, budget_ms: int | None = None
) -> socket.socket:
    """Send a validation as ``client`` over a plain socket; return the socket, answer unread."""
    address = urlsplit(str(client.base_url))
    connection = socket.create_connection((address.hostname, address.port))
    budget = b"" if budget_ms is None else b"X-Time-Budget-Ms: %d\r\n" % budget_ms
    token = client.headers["Authorization"].encode()
    connection.sendall(
        b"POST /auth/validate HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\n"
        + b"Authorization: %s\r\n" % token
        + budget
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    return connection


def test_a_check_with_a_budget_that_has_run_out_is_refused_without_hashing(sqlite_url: str) -> None:
    with serving(make_settings(sqlite_url)) as client:
        timing_check = verifications(client)  # the pool times one check as it opens
        refused = client.post("/auth/validate", content=BODY, headers=budget(0))
        hashed = verifications(client) - timing_check
        served = client.post("/auth/validate", content=BODY, headers=budget(5000))

    assert (refused.status_code, refused.json()["code"]) == (503, "overloaded")
    assert int(refused.headers["Retry-After"]) >= 1
    assert hashed == 0
    assert (served.status_code, served.json()["valid"]) == (200, False)


def test_a_check_that_cannot_finish_within_its_budget_is_refused_at_once(sqlite_url: str) -> None:
    with serving(make_settings(sqlite_url, **SLOW_ARGON2)) as client:
        timing_check = verifications(client)
        started = time.monotonic()
        refused = client.post("/auth/validate", content=BODY, headers=budget(20))
        took = time.monotonic() - started
        hashed = verifications(client) - timing_check

    assert refused.status_code == 503
    assert (hashed, took < 0.4) == (0, True)


def test_a_queued_check_whose_client_disconnects_is_never_hashed(sqlite_url: str) -> None:
    with serving(make_settings(sqlite_url, **SLOW_ARGON2)) as client, ExitStack() as sockets:
        timing_check = verifications(client)
        first = sockets.enter_context(raw_request(client))
        wait_until(lambda: pending(client) == 1, "the first check starting")
        second = sockets.enter_context(raw_request(client))
        wait_until(lambda: pending(client) == 2, "the second check queueing")
        second.close()
        first.settimeout(60)
        answer = first.recv(4096)
        wait_until(lambda: pending(client) == 0, "the queue draining")
        hashed = verifications(client) - timing_check
        abandoned = metric(client, "auth_validations_total", outcome="abandoned")

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert (hashed, abandoned) == (1, 1)


def test_when_the_pool_is_full_a_check_is_refused_before_its_body_is_read(
    sqlite_url: str,
) -> None:
    settings = make_settings(sqlite_url, **SLOW_ARGON2, max_pending_hashes=1)
    with serving(settings) as client, ExitStack() as sockets:
        first = sockets.enter_context(raw_request(client))
        wait_until(lambda: pending(client) == 1, "the first check starting")
        # Not even JSON: a body that was read would be answered 422.
        refused = client.post("/auth/validate", content=b"{not json")
        overloaded = metric(client, "auth_validations_total", outcome="overloaded")
        first.settimeout(60)
        first.recv(4096)

    assert (refused.status_code, refused.json()["code"]) == (503, "overloaded")
    assert refused.headers["Retry-After"].isdigit()
    assert overloaded == 1
