"""The ``auth-service`` command, run as a real process."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from auth_service.__main__ import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, EXIT_USER_EXISTS
from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

COMMAND_TIMEOUT_SECONDS = 30


@pytest.fixture
def environment(database_path: Path) -> dict[str, str]:
    return {**os.environ, "AUTH_SERVICE_DATABASE_URL": f"sqlite:///{database_path}"}


def run_cli(
    environment: dict[str, str], *arguments: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_command("auth-service"), *arguments],
        input=stdin,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


class Terminal:
    """A command whose standard streams are a pseudo-terminal, typed at like a person."""

    def __init__(self, arguments: list[str], environment: dict[str, str]) -> None:
        self._controller, attached = pty.openpty()
        self.process = subprocess.Popen(
            arguments,
            stdin=attached,
            stdout=attached,
            stderr=attached,
            env=environment,
            start_new_session=True,
        )
        os.close(attached)
        self.transcript = ""

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
        while text not in self.transcript:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                msg = f"{text!r} never appeared; the terminal showed {self.transcript!r}"
                raise AssertionError(msg)

    def type_line(self, line: str) -> None:
        os.write(self._controller, f"{line}\n".encode())

    def finish(self) -> int:
        while self._read(COMMAND_TIMEOUT_SECONDS):
            pass
        return self.process.wait(timeout=COMMAND_TIMEOUT_SECONDS)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._controller)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._controller], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self._controller, 4096)
        except OSError:
            return False
        self.transcript += chunk.decode(errors="replace")
        return bool(chunk)


@pytest.fixture
def terminal(environment: dict[str, str]) -> Iterator[Terminal]:
    """``auth-service users add alice`` on a pseudo-terminal."""
    session = Terminal([venv_command("auth-service"), "users", "add", "alice"], environment)
    yield session
    session.close()


def test_added_user_is_listed(environment: dict[str, str], password: str) -> None:
    run_cli(environment, "users", "add", "alice", stdin=f"{password}\n")

    listed = run_cli(environment, "users", "list")

    assert (listed.returncode, listed.stdout) == (EXIT_OK, "alice\n")


def test_add_succeeds_with_exit_0(environment: dict[str, str], password: str) -> None:
    added = run_cli(environment, "users", "add", "alice", stdin=f"{password}\n")

    assert added.returncode == EXIT_OK


def test_add_never_shows_the_password(environment: dict[str, str], password: str) -> None:
    added = run_cli(environment, "users", "add", "alice", stdin=f"{password}\n")

    assert password not in added.stdout + added.stderr


def test_duplicate_user_exits_3(environment: dict[str, str], password: str) -> None:
    run_cli(environment, "users", "add", "alice", stdin=f"{password}\n")

    again = run_cli(environment, "users", "add", "alice", stdin="another\n")

    assert (again.returncode, again.stderr) == (
        EXIT_USER_EXISTS,
        "auth-service: user 'alice' already exists\n",
    )


def test_empty_password_exits_1(environment: dict[str, str]) -> None:
    added = run_cli(environment, "users", "add", "alice", stdin="\n")

    assert (added.returncode, added.stderr) == (
        EXIT_BAD_INPUT,
        "auth-service: the password is empty\n",
    )


def test_closed_standard_input_exits_1(environment: dict[str, str]) -> None:
    assert run_cli(environment, "users", "add", "alice").returncode == EXIT_BAD_INPUT


def test_refused_user_is_not_listed(environment: dict[str, str]) -> None:
    run_cli(environment, "users", "add", "alice", stdin="\n")

    assert run_cli(environment, "users", "list").stdout == ""


def test_missing_name_is_a_usage_error(environment: dict[str, str]) -> None:
    assert run_cli(environment, "users", "add").returncode == EXIT_USAGE


def test_invalid_database_url_exits_1_naming_the_setting(environment: dict[str, str]) -> None:
    environment["AUTH_SERVICE_DATABASE_URL"] = "postgresql://db/auth"

    listed = run_cli(environment, "users", "list")

    assert (listed.returncode, "AUTH_SERVICE_DATABASE_URL" in listed.stderr) == (
        EXIT_BAD_INPUT,
        True,
    )


def test_help_lists_the_exit_codes(environment: dict[str, str]) -> None:
    helped = run_cli(environment, "users", "add", "--help")

    assert "3  the user already exists" in helped.stdout


def test_password_typed_twice_on_a_terminal_adds_the_user(
    terminal: Terminal, environment: dict[str, str], password: str
) -> None:
    terminal.wait_for("Password: ")
    terminal.type_line(password)
    terminal.wait_for("Repeat password: ")
    terminal.type_line(password)

    assert (terminal.finish(), run_cli(environment, "users", "list").stdout) == (
        EXIT_OK,
        "alice\n",
    )


def test_terminal_does_not_echo_the_password(terminal: Terminal, password: str) -> None:
    terminal.wait_for("Password: ")
    terminal.type_line(password)
    terminal.wait_for("Repeat password: ")
    terminal.type_line(password)
    terminal.finish()

    assert password not in terminal.transcript


def test_passwords_that_differ_on_a_terminal_exit_1(terminal: Terminal) -> None:
    terminal.wait_for("Password: ")
    terminal.type_line("one password")
    terminal.wait_for("Repeat password: ")
    terminal.type_line("another password")

    assert terminal.finish() == EXIT_BAD_INPUT


def test_python_m_auth_service_runs_the_command(environment: dict[str, str]) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "auth_service", "users", "list"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )

    assert (listed.returncode, listed.stdout) == (EXIT_OK, "")


def test_serve_validates_a_user_added_with_the_command(
    environment: dict[str, str], password: str, tmp_path: Path
) -> None:
    run_cli(environment, "users", "add", "alice", stdin=f"{password}\n")
    port = free_port()
    serve = [venv_command("auth-service"), "serve", "--port", str(port)]

    with run_process(serve, port=port, env=environment, log_path=tmp_path / "serve.log"):
        response = httpx.post(
            f"http://{HOST}:{port}/auth/validate",
            json={"username": "alice", "password": password},
        )

    assert response.json() == {"valid": True, "subject": "alice"}
