"""The ``auth-service`` command, run as a real process."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from auth_service.__main__ import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN_USER,
    EXIT_USAGE,
    EXIT_USER_EXISTS,
    main,
)
from auth_service.admin import UserAdmin
from auth_service.passwords import PasswordHashing
from tests.auth_service.conftest import make_settings
from tests.auth_service.database import stored_hash
from tests.support.client_tokens import bearer
from tests.support.log_scan import register_secret
from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from auth_service.settings import Settings

COMMAND_TIMEOUT_SECONDS = 30
UNREACHABLE_POSTGRES = "postgresql://127.0.0.1:9/auth"


@pytest.fixture
def environment(sqlite_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "AUTH_SERVICE_DATABASE_URL": sqlite_url,
        "AUTH_SERVICE_ARGON2_TIME_COST": "1",
        "AUTH_SERVICE_ARGON2_MEMORY_COST": "1024",
    }


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


def outcome(completed: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    return completed.returncode, completed.stderr


class InProcess:
    """Runs ``main()`` in this process, for the many variations of one path.

    Every exit status and every command is also run as a real process below;
    these variations only exercise the same code with other input.
    """

    def __init__(
        self,
        environment: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        for name, value in environment.items():
            if name.startswith("AUTH_SERVICE_"):
                monkeypatch.setenv(name, value)
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(self, *arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        self._monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self._capsys.readouterr()
        try:
            status = main(list(arguments))
        except SystemExit as exited:
            status = exited.code if isinstance(exited.code, int) else EXIT_USAGE
        captured = self._capsys.readouterr()
        return subprocess.CompletedProcess(arguments, status, captured.out, captured.err)


@pytest.fixture
def in_process(
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> InProcess:
    return InProcess(environment, monkeypatch, capsys)


def has_password(environment: dict[str, str], username: str, password: str) -> bool:
    settings = settings_of(environment)
    stored = asyncio.run(stored_hash(settings.database_url, username))
    return PasswordHashing(settings).check(stored, password).matched


def settings_of(environment: dict[str, str]) -> Settings:
    return make_settings(environment["AUTH_SERVICE_DATABASE_URL"])


def add_users(environment: dict[str, str], password: str, *names: str) -> None:
    with UserAdmin(settings_of(environment)) as admin:
        for name in names:
            admin.add(name, password)


def usernames(environment: dict[str, str]) -> list[str]:
    with UserAdmin(settings_of(environment)) as admin:
        return admin.usernames()


def exit_statuses_listed(text: str) -> bool:
    statuses = (
        EXIT_OK,
        EXIT_BAD_INPUT,
        EXIT_USAGE,
        EXIT_USER_EXISTS,
        EXIT_UNKNOWN_USER,
        EXIT_UNAVAILABLE,
    )
    return all(f"\n  {status}  " in text for status in statuses) and (
        "4  no user has that name" in text
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


def test_added_user_is_listed_in_canonical_form(environment: dict[str, str], password: str) -> None:
    added = run_cli(environment, "users", "add", "ALICE", stdin=f"{password}\n")
    listed = run_cli(environment, "users", "list")

    assert outcome(added) == (EXIT_OK, "auth-service: added user 'alice'\n")
    assert (listed.returncode, listed.stdout) == (EXIT_OK, "alice\n")
    assert password not in added.stdout + added.stderr


def test_list_prints_every_user_in_order(
    environment: dict[str, str], in_process: InProcess, password: str
) -> None:
    add_users(environment, password, "carol", "alice", "bob")

    assert in_process("users", "list").stdout == "alice\nbob\ncarol\n"


def test_added_password_is_the_first_line_without_its_newline(
    environment: dict[str, str], in_process: InProcess, password: str
) -> None:
    in_process("users", "add", "alice", stdin=f"{password}\nsecond line\n")

    assert has_password(environment, "alice", password)


def test_duplicate_user_exits_3_before_asking_for_a_password(
    environment: dict[str, str], password: str
) -> None:
    add_users(environment, password, "alice")

    again = run_cli(environment, "users", "add", "Alice")

    assert outcome(again) == (EXIT_USER_EXISTS, "auth-service: user 'alice' already exists\n")


def test_invalid_username_exits_1_with_the_reason(
    environment: dict[str, str], password: str
) -> None:
    added = run_cli(environment, "users", "add", "has space", stdin=f"{password}\n")

    assert outcome(added) == (
        EXIT_BAD_INPUT,
        "auth-service: the username has a character that is not allowed in a username (spaces)\n",
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "the username must not be empty"),
        ("a" * 65, "the username must have at most 64 characters"),
    ],
    ids=["empty", "too-long"],
)
def test_other_invalid_usernames_exit_1_with_the_reason(
    in_process: InProcess, password: str, name: str, reason: str
) -> None:
    added = in_process("users", "add", name, stdin=f"{password}\n")

    assert outcome(added) == (EXIT_BAD_INPUT, f"auth-service: {reason}\n")


def test_empty_password_exits_1(environment: dict[str, str]) -> None:
    added = run_cli(environment, "users", "add", "alice", stdin="\n")

    assert outcome(added) == (EXIT_BAD_INPUT, "auth-service: the password is empty\n")
    assert usernames(environment) == []


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        ("", "the password is empty"),
        ("x" * 1025 + "\n", "the password has more than 1024 characters"),
        ("tab\there\n", "the password has a character that is not allowed (controls)"),
        ("windows\r\n", "the password has a character that is not allowed (controls)"),
    ],
    ids=["closed-stdin", "1025-characters", "tab", "carriage-return"],
)
def test_unusable_password_exits_1_with_the_reason(
    environment: dict[str, str], in_process: InProcess, stdin: str, reason: str
) -> None:
    added = in_process("users", "add", "alice", stdin=stdin)

    assert outcome(added) == (EXIT_BAD_INPUT, f"auth-service: {reason}\n")
    assert usernames(environment) == []


def test_longest_password_is_accepted(environment: dict[str, str], in_process: InProcess) -> None:
    longest = "é" * 1024

    added = in_process("users", "add", "alice", stdin=f"{longest}\n")

    assert added.returncode == EXIT_OK
    assert has_password(environment, "alice", longest)


def test_set_password_replaces_the_password(environment: dict[str, str], password: str) -> None:
    add_users(environment, password, "alice")

    changed = run_cli(environment, "users", "set-password", "ALICE", stdin="a new password\n")

    assert outcome(changed) == (EXIT_OK, "auth-service: set the password of user 'alice'\n")
    assert has_password(environment, "alice", "a new password")


def test_set_password_of_an_unknown_user_exits_4(environment: dict[str, str]) -> None:
    changed = run_cli(environment, "users", "set-password", "bob", stdin="a new password\n")

    assert outcome(changed) == (EXIT_UNKNOWN_USER, "auth-service: no user is named 'bob'\n")


def test_set_password_refuses_an_unusable_password(
    environment: dict[str, str], in_process: InProcess, password: str
) -> None:
    add_users(environment, password, "alice")

    changed = in_process("users", "set-password", "alice", stdin="\n")

    assert changed.returncode == EXIT_BAD_INPUT
    assert has_password(environment, "alice", password)


def test_remove_removes_the_user(environment: dict[str, str], password: str) -> None:
    add_users(environment, password, "alice", "bob")

    removed = run_cli(environment, "users", "remove", "Alice")

    assert outcome(removed) == (EXIT_OK, "auth-service: removed user 'alice'\n")
    assert usernames(environment) == ["bob"]


def test_remove_of_an_unknown_user_exits_4(environment: dict[str, str]) -> None:
    removed = run_cli(environment, "users", "remove", "bob")

    assert outcome(removed) == (EXIT_UNKNOWN_USER, "auth-service: no user is named 'bob'\n")


def test_usage_error_exits_2(environment: dict[str, str]) -> None:
    assert run_cli(environment, "users", "add").returncode == EXIT_USAGE


@pytest.mark.parametrize(
    "arguments",
    [["users", "remove"], ["users", "frobnicate"], ["users"], []],
    ids=["remove-without-name", "unknown-command", "users-alone", "nothing"],
)
def test_other_usage_errors_exit_2(in_process: InProcess, arguments: list[str]) -> None:
    assert in_process(*arguments).returncode == EXIT_USAGE


def test_invalid_setting_exits_1_naming_it(environment: dict[str, str]) -> None:
    environment["AUTH_SERVICE_DATABASE_URL"] = "mysql://db/auth"

    listed = run_cli(environment, "users", "list")

    assert (listed.returncode, "AUTH_SERVICE_DATABASE_URL" in listed.stderr) == (
        EXIT_BAD_INPUT,
        True,
    )


@pytest.mark.parametrize("command", [["users", "list"], ["serve", "--port", "9"]])
def test_unreachable_database_exits_5(environment: dict[str, str], command: list[str]) -> None:
    environment["AUTH_SERVICE_DATABASE_URL"] = UNREACHABLE_POSTGRES
    environment["AUTH_SERVICE_DATABASE_TIMEOUT_SECONDS"] = "2"

    completed = run_cli(environment, *command)

    assert completed.returncode == EXIT_UNAVAILABLE
    assert completed.stderr.startswith("auth-service: the database cannot be used: PostgreSQL")


def test_help_lists_every_exit_status(environment: dict[str, str]) -> None:
    helped = run_cli(environment, "--help")

    assert (helped.returncode, exit_statuses_listed(helped.stdout)) == (EXIT_OK, True)


@pytest.mark.parametrize(
    "command",
    [["serve"], ["users"], ["users", "add"], ["users", "set-password"], ["users", "remove"]],
)
def test_every_command_help_lists_every_exit_status(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])

    assert (exited.value.code, exit_statuses_listed(capsys.readouterr().out)) == (EXIT_OK, True)


def test_serve_help_offers_workers_and_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    helped = capsys.readouterr().out

    assert ("--workers" in helped, "--log-level" in helped) == (True, True)


def test_commands_work_on_postgres(
    environment: dict[str, str], postgres_database_url: str, password: str
) -> None:
    environment["AUTH_SERVICE_DATABASE_URL"] = postgres_database_url

    add_users(environment, password, "bob")
    statuses = [
        run_cli(environment, "users", "add", "alice", stdin=f"{password}\n").returncode,
        run_cli(environment, "users", "add", "alice", stdin=f"{password}\n").returncode,
        run_cli(environment, "users", "set-password", "bob", stdin="new one\n").returncode,
        run_cli(environment, "users", "remove", "carol").returncode,
    ]
    listed = run_cli(environment, "users", "list").stdout

    assert (statuses, listed) == ([0, EXIT_USER_EXISTS, 0, EXIT_UNKNOWN_USER], "alice\nbob\n")
    assert has_password(environment, "bob", "new one")


def test_password_typed_twice_on_a_terminal_adds_the_user(
    terminal: Terminal, environment: dict[str, str], password: str
) -> None:
    terminal.wait_for("Password: ")
    terminal.type_line(password)
    terminal.wait_for("Repeat password: ")
    terminal.type_line(password)

    assert (terminal.finish(), usernames(environment)) == (EXIT_OK, ["alice"])


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


def test_serve_validates_and_logs_json_with_the_request_id_and_never_the_password(
    environment: dict[str, str], password: str, tmp_path: Path
) -> None:
    add_users(environment, password, "alice")
    token = register_secret(run_cli(environment, "clients", "add", "user-service").stdout.strip())
    port = free_port()
    serve = [venv_command("auth-service"), "serve", "--port", str(port)]
    log_path = tmp_path / "serve.log"

    with run_process(serve, port=port, env=environment, log_path=log_path):
        right = httpx.post(
            f"http://{HOST}:{port}/auth/validate",
            json={"username": "Alice", "password": password},
            headers={"X-Request-ID": "req-right", **bearer(token)},
        )
        wrong = httpx.post(
            f"http://{HOST}:{port}/auth/validate",
            json={"username": "alice", "password": password + " but wrong"},
            headers={"X-Request-ID": "req-wrong", **bearer(token)},
        )

    log = log_path.read_text(encoding="utf-8")
    entries = [json.loads(line) for line in log.splitlines()]
    checks = [
        (entry["request_id"], entry["username"], entry["outcome"])
        for entry in entries
        if entry["logger"] == "auth_service.validations"
    ]
    assert (right.json(), wrong.json()["valid"]) == ({"valid": True, "subject": "alice"}, False)
    assert checks == [("req-right", "alice", "valid"), ("req-wrong", "alice", "invalid")]
    requests = [entry for entry in entries if entry["logger"] == "servicekit.requests"]
    assert [entry["client"] for entry in requests] == ["user-service", "user-service"]
    assert password not in log
    assert token not in log
