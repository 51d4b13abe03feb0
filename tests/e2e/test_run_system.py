"""``make run``'s runner: the three services up, the demo user in, all stopped on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.log_scan import register_log
from tests.support.servers import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

RUNNER = Path(__file__).resolve().parents[2] / "scripts" / "run_system.py"

pytestmark = pytest.mark.e2e


def _is_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_ports() -> dict[str, int]:
    return {
        "AUTH_SERVICE_PORT": free_port(),
        "USER_SERVICE_PORT": free_port(),
        "FRONTEND_WEB_PORT": free_port(),
    }


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return _free_ports()


@pytest.fixture(scope="module")
def runner(
    tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]
) -> Iterator[subprocess.Popen[str]]:
    """The system as ``make run`` starts it, shared by this module's tests; the last stops it."""
    tmp_path = tmp_path_factory.mktemp("run-system")
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "AUTH_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'auth.db'}",
        "USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}",
    }
    log_path = tmp_path / "services.log"
    register_log(log_path)
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            [sys.executable, str(RUNNER)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        ) as process,
    ):
        assert process.stdout is not None
        started = any(line.startswith("Ctrl-C stops") for line in process.stdout)
        assert started, f"the runner exited with {process.wait()} before the system was up"
        yield process
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=15)


@pytest.mark.usefixtures("runner")
def test_demo_user_can_create_an_account(ports: dict[str, int]) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{ports['USER_SERVICE_PORT']}/accounts",
        json={"username": "alice", "password": "correct-horse-battery-staple"},
    )
    assert response.status_code == 201


@pytest.mark.usefixtures("runner")
def test_frontend_page_is_served(ports: dict[str, int]) -> None:
    response = httpx.get(f"http://127.0.0.1:{ports['FRONTEND_WEB_PORT']}/")
    assert response.status_code == 200


def test_port_in_use_names_the_port_and_its_setting() -> None:
    ports = _free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["USER_SERVICE_PORT"]))
        holder.listen()
        result = subprocess.run(
            [sys.executable, str(RUNNER)],
            env={**os.environ, **{name: str(port) for name, port in ports.items()}},
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"port {ports['USER_SERVICE_PORT']}" in result.stderr
    assert "USER_SERVICE_PORT" in result.stderr


def test_interrupt_stops_all_three(runner: subprocess.Popen[str], ports: dict[str, int]) -> None:
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=15) == 0
    assert not any(_is_listening(port) for port in ports.values())
