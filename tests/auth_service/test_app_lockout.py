"""Lockout, overload and database failures, through the real app on each kind of database."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from argon2 import extract_parameters

from auth_service.admin import UserAdmin
from tests.auth_service.conftest import make_settings
from tests.auth_service.database import raw_execute, stored_hash
from tests.auth_service.serving import add_user, metric, served, serving, validate

if TYPE_CHECKING:
    from pathlib import Path

    from auth_service.settings import Settings

THRESHOLD = 4


@pytest.fixture
def lockout_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"lockout_threshold": THRESHOLD})


def fail(client: httpx.Client, times: int, username: str = "alice") -> list[int]:
    return [validate(client, username, "guess").status_code for _ in range(times)]


def test_ten_failures_lock_the_account_with_retry_after(settings: Settings, password: str) -> None:
    add_user(settings, "alice", password)
    with serving(settings) as client:
        statuses = fail(client, 10)
        locked = validate(client, "alice", password)

    assert (settings.lockout_threshold, statuses) == (10, [200] * 10)
    assert (locked.status_code, locked.json()["code"]) == (429, "locked_out")
    assert list(locked.json()) == ["detail", "code"]
    assert 899 <= int(locked.headers["Retry-After"]) <= 900


def test_locked_account_is_answered_without_hashing(
    lockout_settings: Settings, password: str
) -> None:
    add_user(lockout_settings, "alice", password)
    with serving(lockout_settings) as client:
        fail(client, THRESHOLD)
        verifications = metric(client, "auth_argon2_operations_total", operation="verify")

        statuses = fail(client, 5)

        assert statuses == [429] * 5
        assert metric(client, "auth_argon2_operations_total", operation="verify") == verifications
        assert metric(client, "auth_validations_total", outcome="locked") == 5


def test_lock_of_one_account_leaves_the_others_alone(
    lockout_settings: Settings, password: str
) -> None:
    add_user(lockout_settings, "alice", password)
    add_user(lockout_settings, "bob", password)
    with serving(lockout_settings) as client:
        fail(client, THRESHOLD + 1)
        bob = validate(client, "bob", password)

    assert bob.json() == {"valid": True, "subject": "bob"}


def answer_of(response: httpx.Response, username: str) -> tuple[int, str, dict[str, str]]:
    """What a client sees of an answer, but for the name asked about and per-request headers."""
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in {"date", "x-request-id", "retry-after"}
    }
    return response.status_code, response.text.replace(f'"{username}"', '"<name>"'), headers


def test_an_unknown_name_is_tried_as_a_new_user(settings: Settings, password: str) -> None:
    """12 wrong passwords: a user and a name no one has get the same answers, in the same order."""
    add_user(settings, "alice", password)
    answers: dict[str, list[httpx.Response]] = {"alice": [], "alina": []}
    with serving(settings) as client:
        for _ in range(12):
            for username, responses in answers.items():
                responses.append(validate(client, username, "guess"))

    user, unknown = answers["alice"], answers["alina"]
    assert [r.status_code for r in user] == [200] * 10 + [429] * 2
    assert [answer_of(r, "alina") for r in unknown] == [answer_of(r, "alice") for r in user]
    assert [("retry-after" in r.headers) for r in unknown] == [False] * 10 + [True] * 2
    # The two windows opened a request apart, so the seconds left may differ by one.
    for known, other in zip(user[10:], unknown[10:], strict=True):
        assert abs(int(known.headers["retry-after"]) - int(other.headers["retry-after"])) <= 1


def test_failures_recorded_in_process_lock_an_unknown_name(lockout_settings: Settings) -> None:
    with serving(lockout_settings) as client, UserAdmin(lockout_settings) as admin:
        for _ in range(THRESHOLD):
            admin.record_failed_attempt("Nobody")
        locked = validate(client, "nobody", "guess")
        other = validate(client, "someone", "guess")

    assert (locked.status_code, locked.json()["code"]) == (429, "locked_out")
    assert other.json() == {"valid": False, "subject": "someone"}


def test_an_unknown_name_is_unlocked_when_the_window_has_passed(settings: Settings) -> None:
    brief = settings.model_copy(update={"lockout_threshold": 2, "lockout_window_seconds": 0.5})
    with serving(brief) as client:
        fail(client, 2, username="nobody")
        locked = validate(client, "nobody", "guess")
        time.sleep(0.6)
        after = validate(client, "nobody", "guess")

    assert (locked.status_code, locked.headers["Retry-After"]) == (429, "1")
    assert after.json() == {"valid": False, "subject": "nobody"}


def test_success_clears_earlier_failures(lockout_settings: Settings, password: str) -> None:
    add_user(lockout_settings, "alice", password)
    with serving(lockout_settings) as client:
        fail(client, THRESHOLD - 1)
        validate(client, "alice", password)

        statuses = fail(client, THRESHOLD - 1)
        last = validate(client, "alice", password)

    assert (statuses, last.json()["valid"]) == ([200] * (THRESHOLD - 1), True)


def test_lock_ends_when_the_window_has_passed(settings: Settings, password: str) -> None:
    brief = settings.model_copy(update={"lockout_threshold": 2, "lockout_window_seconds": 0.5})
    add_user(brief, "alice", password)
    with serving(brief) as client:
        fail(client, 2)
        locked = validate(client, "alice", password)
        time.sleep(0.6)
        after = validate(client, "alice", password)

    assert (locked.status_code, locked.headers["Retry-After"]) == (429, "1")
    assert after.json() == {"valid": True, "subject": "alice"}


def test_failures_survive_a_restart(lockout_settings: Settings, password: str) -> None:
    add_user(lockout_settings, "alice", password)
    with serving(lockout_settings) as client:
        fail(client, THRESHOLD)

    with serving(lockout_settings) as restarted:
        assert validate(restarted, "alice", password).status_code == 429


def test_two_instances_on_one_database_share_the_failures(
    lockout_settings: Settings, password: str
) -> None:
    add_user(lockout_settings, "alice", password)
    with serving(lockout_settings) as one, serving(lockout_settings) as two:
        for _ in range(THRESHOLD // 2):
            fail(one, 1)
            fail(two, 1)

        assert [validate(client, "alice", password).status_code for client in (one, two)] == [
            429,
            429,
        ]


def test_failures_recorded_in_process_lock_a_served_account(
    lockout_settings: Settings, password: str
) -> None:
    """How a provider state sets up a lockout: real failures in the real store, from a thread."""
    add_user(lockout_settings, "alice", password)
    with serving(lockout_settings) as client, UserAdmin(lockout_settings) as admin:

        def record_failures() -> None:
            for _ in range(lockout_settings.lockout_threshold):
                admin.record_failed_attempt("alice")

        state_handler = threading.Thread(target=record_failures)
        state_handler.start()
        state_handler.join()
        locked = validate(client, "alice", password)

    assert (locked.status_code, "Retry-After" in locked.headers) == (429, True)


def test_hash_with_old_parameters_is_upgraded_on_success(settings: Settings, password: str) -> None:
    add_user(settings, "alice", password)
    dearer = settings.model_copy(update={"argon2_time_cost": 2, "argon2_memory_cost": 2048})
    with serving(dearer) as client:
        response = validate(client, "alice", password)

    upgraded = extract_parameters(asyncio.run(stored_hash(settings.database_url, "alice")))
    assert response.json()["valid"]
    assert (upgraded.time_cost, upgraded.memory_cost) == (2, 2048)


def test_too_many_pending_checks_are_answered_503_with_retry_after(
    sqlite_url: str, password: str
) -> None:
    # Realistic cost, so that the one place stays taken while the others arrive.
    settings = make_settings(
        sqlite_url,
        argon2_time_cost=2,
        argon2_memory_cost=19456,
        hash_workers=1,
        max_pending_hashes=1,
    )
    add_user(settings, "alice", password)

    async def burst(base_url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post("/auth/validate", json={"username": "alice", "password": password})
                    for _ in range(12)
                )
            )

    with served(settings) as (base_url, headers):
        responses = asyncio.run(burst(base_url))
        with httpx.Client(base_url=base_url) as client:
            overloaded = metric(client, "auth_validations_total", outcome="overloaded")

    refused = [response for response in responses if response.status_code == 503]
    assert [response.status_code for response in responses].count(200) >= 1
    assert refused
    assert {(r.headers["Retry-After"], r.json()["code"]) for r in refused} == {("1", "overloaded")}
    assert overloaded == len(refused)


def test_readyz_is_503_when_the_database_is_gone(
    backend: str, settings: Settings, database_path: Path, request: pytest.FixtureRequest
) -> None:
    with serving(settings) as client:
        ready = client.get("/readyz").status_code
        if backend == "sqlite":
            database_path.unlink()
        else:
            server: str = request.getfixturevalue("postgres_server_url")
            schema: str = request.getfixturevalue("postgres_schema")
            asyncio.run(raw_execute(server, f'DROP SCHEMA "{schema}" CASCADE'))
        not_ready = client.get("/readyz")

    assert (ready, not_ready.status_code, not_ready.json()) == (
        200,
        503,
        {"status": "unavailable"},
    )


def test_validation_is_503_when_postgres_fails(
    postgres_database_url: str, postgres_server_url: str, postgres_schema: str, password: str
) -> None:
    settings = make_settings(postgres_database_url)
    add_user(settings, "alice", password)
    with serving(settings) as client:
        # The client's token is checked, and remembered for a while, before the database goes.
        assert validate(client, "alice", password).status_code == 200
        asyncio.run(raw_execute(postgres_server_url, f'DROP SCHEMA "{postgres_schema}" CASCADE'))
        response = validate(client, "alice", password)
        unavailable = metric(client, "auth_validations_total", outcome="unavailable")

    assert (response.status_code, response.json()["code"], unavailable) == (
        503,
        "store_unavailable",
        1,
    )
    assert list(response.json()) == ["detail", "code"]
