"""The scan of the session's logs for test passwords finds them, and only in logs.

These tests never let a real test password reach the session's own logs: they
scan files of their own, log through a logger that does not propagate to the
root logger, or run a separate pytest session.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

import pytest

from servicekit.client_tokens import new_token
from tests.support import log_scan
from tests.support.log_scan import TEST_PASSWORDS, Leak, LogRegistry, scan
from tests.support.servers import HOST, free_port, run_process

if TYPE_CHECKING:
    from collections.abc import Callable

PROJECT = Path(__file__).resolve().parents[2]
PASSWORD = TEST_PASSWORDS[0]


@dataclass
class FakeSession:
    exitstatus: int | pytest.ExitCode = pytest.ExitCode.OK


@pytest.fixture
def isolated_logger() -> logging.Logger:
    """A logger whose records reach only the handlers a test gives it, never the root logger."""
    logger = logging.getLogger("tests.log_scan.isolated")
    logger.propagate = False
    return logger


def test_scan_finds_a_password_on_its_line(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    log.write_text(f"started\nchecking password={PASSWORD}\nstopped\n", encoding="utf-8")

    assert scan([log]) == [Leak(log, 2, PASSWORD)]


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(json.dumps("pässwörd with spaces"), id="json-ascii-escaped"),
        pytest.param(json.dumps("pässwörd with spaces", ensure_ascii=False), id="json-raw"),
        pytest.param(quote_plus("correct horse battery staple"), id="form-encoded"),
    ],
)
def test_scan_finds_a_password_as_logs_spell_it(tmp_path: Path, spelling: str) -> None:
    log = tmp_path / "service.log"
    log.write_text(f'{{"body": {spelling}}}\n', encoding="utf-8")

    assert len(scan([log])) == 1


def test_scan_passes_clean_and_missing_files(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    log.write_text('{"message": "account created", "username": "alice"}\n', encoding="utf-8")

    assert scan([log, tmp_path / "never-written.log"]) == []


def test_password_logged_in_process_is_found_and_fails_the_session(
    tmp_path: Path, isolated_logger: logging.Logger
) -> None:
    registry = LogRegistry(tmp_path / "logs")
    registry.start(isolated_logger)
    isolated_logger.debug("validating alice with %s", PASSWORD)
    session = FakeSession()

    leaks = registry.finish(session)

    assert leaks == [Leak(registry.in_process_log, 1, PASSWORD)]
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    assert f"  {registry.in_process_log}:1: {PASSWORD!r}" in registry.summary_lines()
    assert registry.in_process_log.is_file(), "a log with a leak is kept for reading"


def _log_in_extra(logger: logging.Logger) -> None:
    logger.info("validating", extra={"body": {"username": "alice", "password": PASSWORD}})


def _log_in_exception(logger: logging.Logger) -> None:
    try:
        int(PASSWORD)  # ValueError: invalid literal for int() with base 10: '<the password>'
    except ValueError:
        logger.exception("validation failed")


@pytest.mark.parametrize("log", [_log_in_extra, _log_in_exception], ids=["extra", "exception"])
def test_password_hidden_outside_the_message_is_found(
    tmp_path: Path, isolated_logger: logging.Logger, log: Callable[[logging.Logger], None]
) -> None:
    registry = LogRegistry(tmp_path / "logs")
    registry.start(isolated_logger)
    log(isolated_logger)

    assert [leak.password for leak in registry.finish(FakeSession())] == [PASSWORD]


def test_a_registered_token_is_looked_for_too(
    tmp_path: Path, isolated_logger: logging.Logger
) -> None:
    registry = LogRegistry(tmp_path / "logs")
    registry.start(isolated_logger)
    token = new_token()
    registry.register_secret(token)
    isolated_logger.info("calling with %s", token)

    assert [leak.password for leak in registry.finish(FakeSession())] == [token]


def test_clean_logs_leave_the_session_passing(
    tmp_path: Path, isolated_logger: logging.Logger
) -> None:
    registry = LogRegistry(tmp_path / "logs")
    registry.start(isolated_logger)
    isolated_logger.debug("account created for alice")
    session = FakeSession()

    assert registry.finish(session) == []
    assert session.exitstatus == pytest.ExitCode.OK
    assert registry.summary_lines()[-1] == "no test password or token found"


def test_a_failed_session_stays_failed_with_its_own_code(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    log.write_text(PASSWORD, encoding="utf-8")
    registry = LogRegistry(tmp_path / "logs")
    registry.register(log)
    session = FakeSession(pytest.ExitCode.INTERRUPTED)

    registry.finish(session)

    assert session.exitstatus == pytest.ExitCode.INTERRUPTED


def test_session_log_receives_debug_records_of_any_logger() -> None:
    marker = f"log-scan-marker-{os.getpid()}"

    logging.getLogger("some.library.deep.inside").debug(marker)

    assert not log_scan.SESSION.detached()
    assert marker in log_scan.SESSION.in_process_log.read_text(encoding="utf-8")
    assert log_scan.SESSION.in_process_log in log_scan.SESSION.files


def test_run_process_registers_its_log(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "http-server.log"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", HOST]

    with run_process(command, port=port, log_path=log):
        pass

    assert log in log_scan.SESSION.files


def test_files_that_hold_passwords_legitimately_are_not_scanned() -> None:
    pacts = sorted((PROJECT / "pacts").glob("*.json"))
    sources = sorted((PROJECT / "tests").rglob("*.py"))

    assert scan(pacts), "the pacts hold test passwords, so scanning them would fail every run"
    assert not set(log_scan.SESSION.files) & {*pacts, *sources}
    assert not [path for path in log_scan.SESSION.files if path.suffix in {".db", ".json", ".py"}]


LEAKY_CONFTEST = """
from pathlib import Path

from tests.conftest import pytest_sessionfinish, pytest_sessionstart, pytest_terminal_summary
from tests.support import log_scan

log_scan.SESSION.folder = Path(__file__).parent / "logs"
"""

LEAKY_TEST = """
import logging


def test_logs_what_it_is_given():
    logging.getLogger("some.service").debug("request body: %s", {logged!r})
"""


def run_pytest_session(folder: Path, logged: str) -> subprocess.CompletedProcess[str]:
    """Run a pytest session, with this project's session hooks, whose test logs ``logged``."""
    (folder / "conftest.py").write_text(LEAKY_CONFTEST, encoding="utf-8")
    (folder / "test_leaky.py").write_text(LEAKY_TEST.format(logged=logged), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(folder)],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_session_whose_test_logs_a_password_fails(tmp_path: Path) -> None:
    finished = run_pytest_session(tmp_path, logged=f"password={PASSWORD}")

    assert finished.returncode == pytest.ExitCode.TESTS_FAILED, finished.stdout
    assert "1 passed" in finished.stdout
    assert "FAILED: 1 test password(s) or token(s) found in logs:" in finished.stdout
    assert f"in-process.log:1: {PASSWORD!r}" in finished.stdout


def test_a_session_whose_test_logs_no_password_passes(tmp_path: Path) -> None:
    finished = run_pytest_session(tmp_path, logged="username=alice")

    assert finished.returncode == pytest.ExitCode.OK, finished.stdout
    assert "no test password or token found" in finished.stdout
