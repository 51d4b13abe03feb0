"""The ``frontend-web`` command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from frontend_web.__main__ import main
from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.e2e
def test_serve_starts_a_process_that_answers_the_home_page(tmp_path: Path) -> None:
    port = free_port()
    command = [venv_command("frontend-web"), "serve", "--host", HOST, "--port", str(port)]
    env = {"FRONTEND_WEB_USER_SERVICE_URL": "http://users.test:8000"}

    with run_process(command, port=port, env=env, log_path=tmp_path / "frontend-web.log"):
        response = httpx.get(f"http://{HOST}:{port}/")

    assert response.status_code == 200
    assert "<code>http://users.test:8000</code>" in response.text


def test_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])

    assert caught.value.code == 2
    assert "serve" in capsys.readouterr().err
