"""user-service and auth-service as real processes, meeting over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.servers import free_port, run_process, venv_command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PASSWORD = "correct-horse-battery-staple"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("two-hops")


@pytest.fixture(scope="module")
def user_service_url(folder: Path) -> Iterator[str]:
    auth_env = {"AUTH_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'auth.db'}"}
    subprocess.run(
        [venv_command("auth-service"), "users", "add", "alice"],
        input=f"{PASSWORD}\n".encode(),
        env={**os.environ, **auth_env},
        check=True,
        capture_output=True,
    )
    auth_port, user_port = free_port(), free_port()
    with (
        run_process(
            [venv_command("auth-service"), "serve", "--port", str(auth_port)],
            port=auth_port,
            env=auth_env,
            log_path=folder / "auth-service.log",
        ),
        run_process(
            [venv_command("user-service"), "serve", "--port", str(user_port)],
            port=user_port,
            env={
                "USER_SERVICE_AUTH_URL": f"http://127.0.0.1:{auth_port}",
                "USER_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'accounts.db'}",
            },
            log_path=folder / "user-service.log",
        ),
    ):
        yield f"http://127.0.0.1:{user_port}"


def test_right_password_creates_an_account(user_service_url: str) -> None:
    response = httpx.post(
        f"{user_service_url}/accounts", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 201
    body = response.json()
    assert isinstance(body.pop("id"), int)
    assert body == {"username": "alice", "status": "created"}


def test_wrong_password_is_401(user_service_url: str) -> None:
    response = httpx.post(
        f"{user_service_url}/accounts", json={"username": "alice", "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid credentials", "code": "invalid_credentials"}


def test_unknown_user_is_401(user_service_url: str) -> None:
    response = httpx.post(
        f"{user_service_url}/accounts", json={"username": "mallory", "password": PASSWORD}
    )
    assert response.status_code == 401


def _log_entries(path: Path) -> list[dict[str, object]]:
    # Only whole lines: the service may be writing the last one.
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]


def test_both_services_log_json_lines_with_the_request_id(
    user_service_url: str, folder: Path
) -> None:
    httpx.post(
        f"{user_service_url}/accounts",
        json={"username": "erin", "password": "wrong-password"},
        headers={"X-Request-ID": "e2e-trace-1"},
        timeout=30,
    )
    for log in ("user-service.log", "auth-service.log"):
        # A request's line is written once its answer has gone: poll for it.
        deadline = time.monotonic() + 10
        traced: list[dict[str, object]] = []
        while not traced and time.monotonic() < deadline:
            traced = [
                entry
                for entry in _log_entries(folder / log)
                if entry.get("request_id") == "e2e-trace-1"
            ]
            time.sleep(0 if traced else 0.05)
        assert traced, f"{log} has no line for request e2e-trace-1"
