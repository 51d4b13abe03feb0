"""``make run``'s runner: the three services up, both internal hops over HTTPS, the demo user in.

The runner makes its local CA under ``var/tls/`` of its working directory: a
temporary folder here.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.frontend_web.html import parse
from tests.support.client_tokens import bearer
from tests.support.log_scan import register_log, register_secret
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


@dataclass(frozen=True)
class Running:
    """The runner's process, what it printed until the system was up, and its working directory."""

    process: subprocess.Popen[str]
    printed: list[str]
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "var" / "tls" / "ca.pem"

    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> Iterator[Running]:
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
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        ) as process,
    ):
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops"):
                break
        else:
            pytest.fail(f"the runner exited with {process.wait()} before the system was up")
        yield Running(process, printed, tmp_path)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=15)


def test_it_prints_https_for_the_internal_hops_and_http_for_the_browser(
    runner: Running, ports: dict[str, int]
) -> None:
    assert f"auth-service  https://127.0.0.1:{ports['AUTH_SERVICE_PORT']}" in runner.printed
    assert f"user-service  https://127.0.0.1:{ports['USER_SERVICE_PORT']}" in runner.printed
    assert f"frontend-web  http://127.0.0.1:{ports['FRONTEND_WEB_PORT']}" in runner.printed
    assert any("curl --cacert var/tls/ca.pem" in line for line in runner.printed)


def test_its_local_ca_is_under_var_tls_readable_by_its_owner_only(runner: Running) -> None:
    folder = runner.ca_file.parent
    assert sorted(path.name for path in folder.iterdir()) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]
    assert {(path.stat().st_mode & 0o777) for path in folder.iterdir()} == {0o600}


@pytest.mark.parametrize("port_setting", ["AUTH_SERVICE_PORT", "USER_SERVICE_PORT"])
def test_the_internal_hops_serve_https_verified_against_the_local_ca(
    runner: Running, ports: dict[str, int], port_setting: str
) -> None:
    response = httpx.get(
        f"https://localhost:{ports[port_setting]}/livez", verify=runner.verify(), timeout=10
    )
    assert response.status_code == 200


def test_its_client_tokens_are_under_var_tokens_readable_by_their_owner_only(
    runner: Running,
) -> None:
    folder = runner.directory / "var" / "tokens"
    assert sorted(path.name for path in folder.iterdir()) == [
        "frontend-web-for-user-service",
        "user-service-for-auth-service",
    ]
    assert {(path.stat().st_mode & 0o777) for path in folder.iterdir()} == {0o600}
    assert folder.stat().st_mode & 0o777 == 0o700


def test_demo_user_can_create_an_account_as_frontend_web_only(
    runner: Running, ports: dict[str, int]
) -> None:
    url = f"https://127.0.0.1:{ports['USER_SERVICE_PORT']}/accounts"
    body = {"username": "alice", "password": "correct-horse-battery-staple"}
    token_file = runner.directory / "var" / "tokens" / "frontend-web-for-user-service"
    token = register_secret(token_file.read_text(encoding="ascii").strip())
    anonymous = httpx.post(url, json=body, verify=runner.verify(), timeout=30)
    response = httpx.post(url, json=body, headers=bearer(token), verify=runner.verify(), timeout=30)
    assert anonymous.status_code == 401
    assert response.status_code == 201
    assert any("Authorization: Bearer $(cat var/tokens/" in line for line in runner.printed)


@pytest.mark.usefixtures("runner")
def test_frontend_page_is_served(ports: dict[str, int]) -> None:
    response = httpx.get(f"http://127.0.0.1:{ports['FRONTEND_WEB_PORT']}/")
    assert response.status_code == 200


@pytest.mark.usefixtures("runner")
def test_a_sign_up_on_the_page_crosses_both_https_hops(ports: dict[str, int]) -> None:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{ports['FRONTEND_WEB_PORT']}", timeout=30
    ) as browser:
        page = parse(browser.get("/").text)
        response = browser.post(
            "/signup",
            data={
                "username": "alice",
                "password": "wrong-password",
                "csrf_token": page.field_value("csrf_token") or "",
                "idempotency_key": page.field_value("idempotency_key") or "",
            },
        )
    # auth-service's refusal, carried back through user-service: both hops answered.
    assert response.status_code == 422
    assert "invalid" in response.text.lower()


def test_port_in_use_names_the_port_and_its_setting(tmp_path: Path) -> None:
    ports = _free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["USER_SERVICE_PORT"]))
        holder.listen()
        result = subprocess.run(
            [sys.executable, str(RUNNER)],
            env={**os.environ, **{name: str(port) for name, port in ports.items()}},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"port {ports['USER_SERVICE_PORT']}" in result.stderr
    assert "USER_SERVICE_PORT" in result.stderr


def test_interrupt_stops_all_three(runner: Running, ports: dict[str, int]) -> None:
    runner.process.send_signal(signal.SIGINT)
    assert runner.process.wait(timeout=15) == 0
    assert not any(_is_listening(port) for port in ports.values())
