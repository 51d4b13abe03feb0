"""The ``frontend-web`` command line."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.__main__ import main
from tests.frontend_web.html import parse
from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.e2e
def test_serve_starts_a_process_that_answers_the_sign_up_form(tmp_path: Path) -> None:
    port = free_port()
    command = [venv_command("frontend-web"), "serve", "--host", HOST, "--port", str(port)]
    env = {"FRONTEND_WEB_USER_SERVICE_URL": "http://users.test:8000"}

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
