"""The contract suite's wall time: ``pytest tests/contracts``, consumer tests and verifications.

A smoke run times the consumer tests only, once.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from tests.support.processes import clean_environment, venv_command

from bench.commands import REPO_ROOT
from bench.runs import median

if TYPE_CHECKING:
    from pathlib import Path

    from bench.runs import RunConfig

CONTRACT_TESTS = "tests/contracts"
CONTRACTS_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class ContractRun:
    """One run of the contract suite.

    Attributes:
        seconds: Wall time of the whole ``pytest`` process.
        tests: Tests run.
        failed: Tests that failed or could not run (collection errors included).
        skipped: Tests skipped.
        consumer_seconds: Time pytest spent in consumer tests.
        provider_seconds: Time pytest spent in provider verifications.
        exit_code: pytest's exit code.
        summary: pytest's last line.
    """

    seconds: float
    tests: int
    failed: int
    skipped: int
    consumer_seconds: float
    provider_seconds: float
    exit_code: int
    summary: str


@dataclass
class ContractResults:
    """What the contracts scenario measured.

    Attributes:
        runs: One a round.
        selection: The tests run, as given to pytest.
    """

    runs: list[ContractRun]
    selection: list[str]

    def median(self, attribute: str) -> float:
        """Median of a numeric attribute of :class:`ContractRun` over the rounds."""
        return median([float(getattr(run, attribute)) for run in self.runs])


def contract_suite(config: RunConfig) -> ContractResults:
    """Time ``pytest tests/contracts -q``: every consumer test and provider verification.

    A smoke run times the consumer tests only, once.

    Args:
        config: How to run.

    Returns:
        The timings, one a round.
    """
    selection = [CONTRACT_TESTS, *(["-k", "consumer"] if config.smoke else [])]
    folder = config.run_folder / "contracts"
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for round_number in range(1 if config.smoke else config.rounds):
        report = folder / f"junit-{round_number}.xml"
        started = time.perf_counter()
        completed = subprocess.run(
            [
                venv_command("pytest"),
                *selection,
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
            ],
            cwd=REPO_ROOT,
            env=clean_environment(),
            capture_output=True,
            text=True,
            check=False,
            timeout=CONTRACTS_TIMEOUT_SECONDS,
        )
        seconds = time.perf_counter() - started
        (folder / f"pytest-{round_number}.out").write_text(
            completed.stdout + completed.stderr, encoding="utf-8"
        )
        runs.append(_contract_run(report, seconds, completed))
    return ContractResults(runs, selection)


def _contract_run(
    report: Path, seconds: float, completed: subprocess.CompletedProcess[str]
) -> ContractRun:
    lines = completed.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else f"pytest exited with {completed.returncode}"
    if not report.exists():
        return ContractRun(seconds, 0, 0, 0, 0.0, 0.0, completed.returncode, summary)
    # pytest's own report, written a moment ago by the process started above.
    root = ET.parse(report).getroot()  # noqa: S314
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return ContractRun(seconds, 0, 0, 0, 0.0, 0.0, completed.returncode, summary)
    time_by_kind = {"consumer": 0.0, "provider": 0.0}
    for case in suite.iter("testcase"):
        for kind in time_by_kind:
            if f"test_{kind}_" in case.get("classname", ""):
                time_by_kind[kind] += float(case.get("time", "0"))
    return ContractRun(
        seconds=seconds,
        tests=int(suite.get("tests", "0")),
        failed=int(suite.get("failures", "0")) + int(suite.get("errors", "0")),
        skipped=int(suite.get("skipped", "0")),
        consumer_seconds=time_by_kind["consumer"],
        provider_seconds=time_by_kind["provider"],
        exit_code=completed.returncode,
        summary=summary,
    )
