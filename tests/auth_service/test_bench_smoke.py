"""The throughput benchmark runs end to end (a second of each phase) and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "auth_throughput.py"
ROWS = (
    "| validations/s |",
    "| p50 latency (ms) |",
    "| p99 latency (ms) |",
    "| errors | 0 |",
    "| raw verifies/s (",
    "| ratio |",
)


def test_bench_smoke_run_exits_0_and_prints_the_table() -> None:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("AUTH_SERVICE_")
    }

    completed = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--clients", "8"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("| metric | value |\n|---|---|\n")
    assert all(row in completed.stdout for row in ROWS), completed.stdout
