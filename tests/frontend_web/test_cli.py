"""The ``frontend-web`` command line."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.__main__ import main
from tests.frontend_web.html import parse
from tests.support.log_scan import register_secret
from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from pathlib import Path

STARTUP_FAILURE = 3


@pytest.mark.e2e
def test_serve_starts_a_process_that_answers_the_sign_up_form(tmp_path: Path) -> None:
    port = free_port()
    command = [venv_command("frontend-web"), "serve", "--host", HOST, "--port", str(port)]
    # Nothing listens there: showing the form does not call user-service.
    env = {
        "FRONTEND_WEB_USER_SERVICE_URL": f"http://{HOST}:{free_port()}",
        "FRONTEND_WEB_USER_SERVICE_TOKEN": register_secret("tok-cli-frontend-web-5b0e"),
    }

    with run_process(command, port=port, env=env, log_path=tmp_path / "frontend-web.log"):
        response = httpx.get(f"http://{HOST}:{port}/")
        css = httpx.get(f"http://{HOST}:{port}/static/site.css")

    assert response.status_code == 200
    assert parse(response.text).by_id("username").get("name") == "username"
    assert css.status_code == 200


@pytest.mark.e2e
def test_python_dash_m_serve_logs_json_lines(tmp_path: Path) -> None:
    port = free_port()
    command = [venv_command("python"), "-m", "frontend_web", "serve", "--port", str(port)]
    log = tmp_path / "frontend-web.log"

    with run_process(command, port=port, log_path=log):
        httpx.get(f"http://{HOST}:{port}/livez", headers={"X-Request-ID": "cli-trace-1"})

    assert '"request_id": "cli-trace-1"' in log.read_text()


def serve_refused(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``frontend-web serve`` with settings it must refuse; it exits without serving."""
    return subprocess.run(
        [venv_command("frontend-web"), "serve", "--port", str(free_port())],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
def test_serve_without_a_token_for_user_service_exits_3_naming_both_settings() -> None:
    # An empty variable counts as unset; it hides the session's default token.
    result = serve_refused({"FRONTEND_WEB_USER_SERVICE_TOKEN": ""})

    assert result.returncode == STARTUP_FAILURE
    assert (
        "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE or FRONTEND_WEB_USER_SERVICE_TOKEN"
        in result.stdout + result.stderr
    )


@pytest.mark.e2e
def test_serve_with_plain_http_to_another_host_exits_3_naming_the_switch() -> None:
    result = serve_refused({"FRONTEND_WEB_USER_SERVICE_URL": "http://users.internal:8000"})

    output = result.stdout + result.stderr
    assert result.returncode == STARTUP_FAILURE
    assert "not a loopback host" in output
    assert "FRONTEND_WEB_USER_SERVICE_ALLOW_PLAINTEXT=true" in output


@pytest.mark.e2e
def test_serve_with_a_ca_file_that_is_no_certificate_exits_3_naming_it(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")

    result = serve_refused({"FRONTEND_WEB_USER_SERVICE_CA_FILE": str(not_pem)})

    output = result.stdout + result.stderr
    assert result.returncode == STARTUP_FAILURE
    assert "FRONTEND_WEB_USER_SERVICE_CA_FILE" in output
    assert "holds no PEM certificate" in output


def test_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])

    assert caught.value.code == 2
    assert "serve" in capsys.readouterr().err


def test_serve_takes_the_shared_options_and_defaults_to_port_8080() -> None:
    result = subprocess.run(
        [venv_command("frontend-web"), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    for option in ("--host", "--port", "--workers", "--log-level"):
        assert option in result.stdout
    assert "default: 8080" in result.stdout
