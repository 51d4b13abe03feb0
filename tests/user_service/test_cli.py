"""The ``user-service`` command line, run as a real process."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.log_scan import register_secret
from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from pathlib import Path

    from tests.user_service.stand_in_auth import StandInAuthService

pytestmark = pytest.mark.e2e

AUTH_TOKEN = register_secret("tok-cli-user-service-for-auth-91c0")
STARTUP_FAILURE = 3


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


def add_client(env: dict[str, str], name: str = "frontend-web") -> str:
    """Run ``user-service clients add NAME`` on the database of ``env``; return the token."""
    result = subprocess.run(
        [venv_command("user-service"), "clients", "add", name],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return register_secret(result.stdout.strip())


def test_served_process_creates_accounts_through_the_configured_auth_service(
    tmp_path: Path, stand_in_auth: StandInAuthService
) -> None:
    port = free_port()
    command = [venv_command("user-service"), "serve", "--host", HOST, "--port", str(port)]
    env = {
        **database_env(tmp_path),
        "USER_SERVICE_AUTH_URL": stand_in_auth.base_url,
        "USER_SERVICE_AUTH_TOKEN": AUTH_TOKEN,
    }
    caller = add_client(env)

    with run_process(command, port=port, env=env, log_path=tmp_path / "user-service.log"):
        response = httpx.post(
            f"http://{HOST}:{port}/accounts",
            json={"username": "alice", "password": "correct horse battery staple"},
            headers={"Authorization": f"Bearer {caller}"},
        )

    assert (response.status_code, response.json()["username"]) == (201, "alice")
    assert [request.json() for request in stand_in_auth.received] == [
        {"username": "alice", "password": "correct horse battery staple"}
    ]
    assert [request.authorization for request in stand_in_auth.received] == [f"Bearer {AUTH_TOKEN}"]


def serve_refused(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``user-service serve`` with settings it must refuse; it exits without serving."""
    return subprocess.run(
        [venv_command("user-service"), "serve", "--port", str(free_port())],
        env={**os.environ, **database_env(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_without_a_token_for_auth_service_exits_3_naming_both_settings(
    tmp_path: Path,
) -> None:
    # An empty variable counts as unset; it hides the session's default token.
    result = serve_refused(tmp_path, {"USER_SERVICE_AUTH_TOKEN": ""})

    assert result.returncode == STARTUP_FAILURE
    assert (
        "USER_SERVICE_AUTH_TOKEN_FILE or USER_SERVICE_AUTH_TOKEN" in result.stdout + result.stderr
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_with_an_empty_token_file_exits_3_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "auth-token"
    empty.write_text("\n")

    result = serve_refused(
        tmp_path, {"USER_SERVICE_AUTH_TOKEN": "", "USER_SERVICE_AUTH_TOKEN_FILE": str(empty)}
    )

    output = result.stdout + result.stderr
    assert result.returncode == STARTUP_FAILURE
    assert "USER_SERVICE_AUTH_TOKEN_FILE" in output
    assert "is empty" in output


def test_serve_with_plain_http_to_another_host_exits_3_naming_the_switch(tmp_path: Path) -> None:
    result = serve_refused(tmp_path, {"USER_SERVICE_AUTH_URL": "http://auth.internal:8001"})

    output = result.stdout + result.stderr
    assert result.returncode == STARTUP_FAILURE
    assert "not a loopback host" in output
    assert "USER_SERVICE_AUTH_ALLOW_PLAINTEXT=true" in output


def test_no_command_exits_2_with_usage() -> None:
    result = subprocess.run(
        [venv_command("user-service")], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 2
    assert "usage: user-service" in result.stderr
