"""Settings and reporting that every test in the project runs under."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter

# The Pact verifier sends anonymous usage statistics unless told not to; these
# tests must not reach any host but this one.
os.environ.setdefault("PACT_DO_NOT_TRACK", "true")

CONTRACT_TESTS = "tests/contracts/"


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
