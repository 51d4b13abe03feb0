"""The benchmarks still run: each scenario for about a second, and the load checks answers."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from bench.load import Load, drive, wrk_path
from bench.processes import Command, clean_environment, free_port, running

if TYPE_CHECKING:
    from collections.abc import Iterator

    from bench.load import Generator
    from bench.processes import Service

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATORS: list[Generator] = ["python", "wrk"] if wrk_path() else ["python"]


def run_module(module: str, *arguments: str) -> str:
    """Run ``python -m module arguments`` from the repository; it must exit 0.

    Returns:
        What it printed on standard output.
    """
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=110,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_compare_measures_a_commit_and_the_working_tree(tmp_path: Path) -> None:
    output = tmp_path / "compare.md"
    run_module("bench.compare", "HEAD", "worktree", "--smoke", "--output", str(output))

    table = output.read_text(encoding="utf-8")
    rows = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| ")]
    header, *measured = rows
    assert header[:3] == ["revision", "requests/s", "vs first"]
    assert [row[0] for row in measured][1:] == ["worktree"]
    assert len(measured) == 2
    assert measured[0][2] == "1.00x"
    for row in measured:
        assert float(row[1].replace(",", "")) > 0
        assert row[5] == "0"  # errors


def test_smoke_run_writes_every_row_and_nothing_crashes(tmp_path: Path) -> None:
    run_module("bench", "--smoke", "--output", str(tmp_path))

    table = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert "## Crashed" not in table
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "latest.png").stat().st_size > 0
    else:
        assert "No chart: matplotlib is not installed" in table
    for row in (
        "| user-service requests/s over the seed design's",
        "| user-service p99",
        "| user-service requests/s over the no-hop limit's",
        "| auth-service validations/s over the raw argon2id rate",
        "| POST /accounts requests/s at 10k stored accounts vs 100",
        "| GET /accounts/{id} requests/s at 10k stored accounts vs 100",
        "| user-service @ 0 ms auth |",
        "| user-service @ 10 ms auth |",
        "| seed design @ 0 ms auth |",
        "| seed design @ 10 ms auth |",
        "| no-hop limit (no hop) |",
        "| validations/s |",
        "| raw verifies/s (",
        "| 100 |",
        "| 1,000 |",
        "| 10,000 |",
    ):
        assert row in table, row
    assert "not measured" not in table
    if wrk_path() is None:
        assert "built-in Python load generator" in table

    (raw,) = tmp_path.glob("runs/*/results.json")
    results = json.loads(raw.read_text(encoding="utf-8"))
    every_series = [
        *results["designs"]["series"].values(),
        *results["growth"]["create"].values(),
        *results["growth"]["get"].values(),
    ]
    for series in every_series:
        assert series["errors"] == 0, series
        assert series["requests_per_second"] > 0, series
    assert results["auth"]["exit_code"] == 0
    (contracts,) = results["contracts"]["runs"]
    assert contracts["tests"] > 0


@pytest.fixture(scope="module")
def no_hop_limit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port = free_port()
    command = Command(
        "limit",
        [sys.executable, "-m", "bench.seed_design", "--port", str(port), "--no-hop"],
        port,
        tmp_path_factory.mktemp("limit") / "limit.log",
        env=clean_environment({"PYTHONPATH": str(REPO_ROOT)}),
    )
    with running(command) as (service,):
        yield service


@pytest.mark.parametrize("generator", GENERATORS)
def test_load_counts_checked_answers(
    no_hop_limit: Service, generator: Generator, tmp_path: Path
) -> None:
    load = Load("create", connections=4, seconds=1, generator=generator, prefix="btestx")

    measurement = drive(
        no_hop_limit.base_url, load, results=tmp_path / "create.json", watch=[no_hop_limit]
    )

    assert measurement.errors == 0, measurement.example
    assert measurement.good > 0
    assert 0 < measurement.generator_cpu < 1
    assert measurement.service_cpu["limit"] > 0


@pytest.mark.parametrize("generator", GENERATORS)
def test_load_counts_wrong_answers_as_errors(
    no_hop_limit: Service, generator: Generator, tmp_path: Path
) -> None:
    # The seed's design has no GET /accounts/{id}: every answer is a 404.
    load = Load("get", connections=4, seconds=1, generator=generator, stored=10)

    measurement = drive(no_hop_limit.base_url, load, results=tmp_path / "get.json")

    assert measurement.good == 0
    assert measurement.errors > 0
    assert measurement.example.startswith("404")


def test_profile_samples_every_worker_and_names_where_the_time_went() -> None:
    out = run_module("bench.profile_user_service", "--smoke", "--workers", "2")

    assert "errors 0" in out
    assert "(2 workers)" in out
    assert re.search(r"^ +\d+\.\d%  MainThread$", out, re.MULTILINE)
    assert re.search(r"^ +\d+\.\d%  sqlite-account-writer$", out, re.MULTILINE)
    # The request path shows up under the event loops, our own code included.
    assert re.search(r"%  ServiceMiddleware\.__call__ \(servicekit/middleware\.py:\d+\)", out)
