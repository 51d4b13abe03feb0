"""The ``user-service`` command line, run as a real process."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from pathlib import Path

    from tests.user_service.stand_in_auth import StandInAuthService

pytestmark = pytest.mark.e2e


def database_env(tmp_path: Path) -> dict[str, str]:
    """Keep the process's accounts in a database of this test's own."""
    return {"USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}"}


def assert_livez_answers(port: int) -> None:
    response = httpx.get(f"http://{HOST}:{port}/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_serve_starts_a_process_that_answers_livez(tmp_path: Path) -> None:
    port = free_port()
    command = [venv_command("user-service"), "serve", "--port", str(port)]
    env = database_env(tmp_path)

    with run_process(command, port=port, env=env, log_path=tmp_path / "user-service.log"):
        assert_livez_answers(port)


def test_python_dash_m_serve_starts_a_process_that_answers_livez(tmp_path: Path) -> None:
    port = free_port()
    command = [venv_command("python"), "-m", "user_service", "serve", "--port", str(port)]
    env = database_env(tmp_path)

    with run_process(command, port=port, env=env, log_path=tmp_path / "user-service.log"):
        assert_livez_answers(port)


def test_served_process_creates_accounts_through_the_configured_auth_service(
    tmp_path: Path, stand_in_auth: StandInAuthService
) -> None:
    port = free_port()
    command = [venv_command("user-service"), "serve", "--host", HOST, "--port", str(port)]
    env = {**database_env(tmp_path), "USER_SERVICE_AUTH_URL": stand_in_auth.base_url}

    with run_process(command, port=port, env=env, log_path=tmp_path / "user-service.log"):
        response = httpx.post(
            f"http://{HOST}:{port}/accounts",
            json={"username": "alice", "password": "correct horse battery staple"},
        )

    assert (response.status_code, response.json()["username"]) == (201, "alice")
    assert [request.json() for request in stand_in_auth.received] == [
        {"username": "alice", "password": "correct horse battery staple"}
    ]


def test_no_command_exits_2_with_usage() -> None:
    result = subprocess.run(
        [venv_command("user-service")], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 2
    assert "serve" in result.stderr
