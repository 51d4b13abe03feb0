"""Settings and reporting that every test in the project runs under."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import pytest

from tests.support import log_scan
from tests.support.tls import TestTls, make_tls

if TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter

# The Pact verifier sends anonymous usage statistics unless told not to; these
# tests must not reach any host but this one.
os.environ.setdefault("PACT_DO_NOT_TRACK", "true")

# Apps built from default settings (the seed's default app, services started
# without a database URL) keep their data here, never in the working directory.
_DEFAULT_DATA = tempfile.mkdtemp(prefix="pact-two-hop-tests-")
os.environ.setdefault("USER_SERVICE_DATABASE_URL", f"sqlite:///{_DEFAULT_DATA}/user-service.db")
os.environ.setdefault("AUTH_SERVICE_DATABASE_URL", f"sqlite:///{_DEFAULT_DATA}/auth-service.db")

# The client tokens the callers send upstream (their apps refuse to build
# without one). A test or a process that needs none, or a file instead, sets
# the variable to "" (counted as unset).
for _variable, _token in (
    ("USER_SERVICE_AUTH_TOKEN", "test-token-user-service-for-auth-service"),
    ("FRONTEND_WEB_USER_SERVICE_TOKEN", "test-token-frontend-web-for-user-service"),
):
    if os.environ.setdefault(_variable, _token).strip():
        log_scan.register_secret(os.environ[_variable].strip())

CONTRACT_TESTS = "tests/contracts/"


def pytest_sessionstart() -> None:
    """Write every record logged in this process to a file that the log scan reads."""
    log_scan.SESSION.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the default data folder; fail the session if a log holds a test password."""
    shutil.rmtree(_DEFAULT_DATA, ignore_errors=True)
    log_scan.SESSION.finish(session)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """List every contract test and its outcome, so the run shows what was verified."""
    outcomes = [
        (report.nodeid.removeprefix(CONTRACT_TESTS), outcome.upper())
        for outcome in ("passed", "failed", "error", "skipped")
        for report in terminalreporter.stats.get(outcome, [])
        if report.nodeid.startswith(CONTRACT_TESTS)
        and (report.when == "call" or outcome == "error")
    ]
    if outcomes:
        terminalreporter.section("contracts")
        for nodeid, outcome in sorted(outcomes):
            terminalreporter.write_line(f"{outcome:7} {nodeid}")
    log_scan.SESSION.write_summary(terminalreporter)


@pytest.fixture(scope="session")
def test_tls(tmp_path_factory: pytest.TempPathFactory) -> TestTls:
    """A test CA and a server certificate for 127.0.0.1 and localhost, shared by the session."""
    return make_tls(tmp_path_factory.mktemp("tls"))
