"""The throughput benchmark runs end to end (a second of each phase) and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import clean_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "| validations/s |",
    "| p50 latency (ms) |",
    "| p99 latency (ms) |",
    "| refused (503 overloaded, then Retry-After waited) |",
    "| errors | 0 |",
    "| raw verifies/s (",
    "| ratio |",
)


def test_bench_smoke_run_exits_0_and_prints_the_table() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.auth_throughput", "--smoke", "--clients", "8"],
        cwd=REPO_ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("| metric | value |\n|---|---|\n")
    assert all(row in completed.stdout for row in ROWS), completed.stdout
