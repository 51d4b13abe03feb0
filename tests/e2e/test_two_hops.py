"""user-service and auth-service as real processes, meeting over HTTPS, each caller a client."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.system import (
    ALICE,
    ALICE_PASSWORD,
    AUTH_SERVICE,
    FRONTEND_WEB,
    USER_SERVICE,
    WRONG_PASSWORD,
    System,
    running_system,
    verified,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.tls import TestTls

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("two-hops")


@pytest.fixture(scope="module")
def system(folder: Path, test_tls: TestTls) -> Iterator[System]:
    with running_system(folder, test_tls, services=(AUTH_SERVICE, USER_SERVICE)) as started:
        yield started


@pytest.fixture
def frontend_web(system: System) -> Iterator[httpx.Client]:
    """user-service, called as frontend-web: its client token, over HTTPS."""
    with system.as_frontend_web() as client:
        yield client


def test_right_password_creates_an_account(frontend_web: httpx.Client) -> None:
    response = frontend_web.post("/accounts", json={"username": ALICE, "password": ALICE_PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert isinstance(body.pop("id"), int)
    assert body == {"username": "alice", "status": "created"}


def test_wrong_password_is_401(frontend_web: httpx.Client) -> None:
    response = frontend_web.post("/accounts", json={"username": ALICE, "password": WRONG_PASSWORD})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid credentials", "code": "invalid_credentials"}


def test_unknown_user_is_401(frontend_web: httpx.Client) -> None:
    response = frontend_web.post(
        "/accounts", json={"username": "mallory", "password": ALICE_PASSWORD}
    )
    assert response.status_code == 401


def _log_entries(path: Path) -> list[dict[str, object]]:
    # Only whole lines: the service may be writing the last one.
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]


def test_both_services_log_json_lines_with_the_request_id_and_the_caller(
    frontend_web: httpx.Client, folder: Path
) -> None:
    frontend_web.post(
        "/accounts",
        json={"username": "erin", "password": WRONG_PASSWORD},
        headers={"X-Request-ID": "e2e-trace-1"},
    )
    for log, caller in (("user-service.log", FRONTEND_WEB), ("auth-service.log", USER_SERVICE)):
        # A request's line is written once its answer has gone: poll for it.
        deadline = time.monotonic() + 10
        traced: list[dict[str, object]] = []
        while not traced and time.monotonic() < deadline:
            traced = [
                entry
                for entry in _log_entries(folder / log)
                if entry.get("request_id") == "e2e-trace-1" and "client" in entry
            ]
            time.sleep(0 if traced else 0.05)
        assert traced, f"{log} has no line naming the client of request e2e-trace-1"
        assert {entry["client"] for entry in traced} == {caller}


def test_a_call_without_the_callers_token_is_refused_at_each_hop(system: System) -> None:
    body = {"username": ALICE, "password": ALICE_PASSWORD}
    verify = verified(system.tls)
    for provider, token in (
        (system.users, system.user_service_token),  # auth-service's token, not user-service's
        (system.auth, system.frontend_token),  # user-service's token, not auth-service's
    ):
        path = "/accounts" if provider is system.users else "/auth/validate"
        anonymous = httpx.post(f"{provider.url}{path}", json=body, verify=verify, timeout=30)
        wrong = httpx.post(
            f"{provider.url}{path}", json=body, headers=token.headers, verify=verify, timeout=30
        )
        assert (anonymous.status_code, wrong.status_code) == (401, 401), provider.name
        assert anonymous.json()["code"] == wrong.json()["code"] == "invalid_token"
        assert wrong.headers["WWW-Authenticate"] == (
            f'Bearer realm="{provider.name}", error="invalid_token"'
        )
