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
from bench.commands import seed_command
from bench.load import Load, drive, wrk_path
from bench.services import running

if TYPE_CHECKING:
    from collections.abc import Iterator

    from bench.load import Generator
    from bench.services import Service

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
        assert (tmp_path / "overload.png").stat().st_size > 0
        assert "![offered load against goodput](overload.png)" in table
    else:
        assert "No chart: matplotlib is not installed" in table
    for row in (
        "| sign-ups/s user-service → auth-service over the raw argon2id rate",
        "| sign-ups/s frontend-web form → user-service → auth-service over the raw argon2id rate",
        "| goodput at 4x capacity (open loop) |",
        "| goodput at 10x capacity (open loop) |",
        "| every request of the spike answered 201, 409, 429 or 503 with Retry-After |",
        "| p99 of rejections (every answer but 201/409), worst rate |",
        "| p99 of admitted sign-ups (201/409), worst rate |",
        "| first sign-up after each rate, after a short drain |",
        "| peak memory of each service at 10x over 1x |",
        "| nothing lost or doubled: user-service's accounts against the answers |",
        "| user-service: every account answered 201 is on disk",
        "| auth-service validations/s over the raw argon2id rate",
        "| POST /accounts requests/s at 10k stored accounts vs 100",
        "| GET /accounts/{id} requests/s at 10k stored accounts vs 100",
        "| raw argon2id, ",
        "| user-service → auth-service |",
        "| frontend-web form → user-service → auth-service |",
        "| seed design → auth-service |",
        "| 1x (",
        "| 2x (",
        "| 4x (",
        "| 10x (",
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
    # The stand-in's targets are gone: it measures overhead, not goals.
    assert "over the seed design's" not in table
    assert "over the no-hop limit's" not in table
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

    # The real path signs people up on every path, whatever the services refuse meanwhile.
    real_path = results["real_path"]
    assert real_path["raw"][0]["verifications"] > 0
    for series in real_path["series"].values():
        assert series["requests_per_second"] > 0, series
    # The spike's rates are tiny in a smoke run: every phase is answered, and checked.
    phases = results["spike"]["phases"]
    assert [phase["multiple"] for phase in phases] == [1, 2, 4, 10]
    for phase in phases:
        assert phase["requests"] == round(phase["offered"] * phase["seconds"]) > 0
        assert (
            sum(phase["statuses"].values()) + phase["gave_up"] + phase["connection_errors"]
            == (phase["requests"])
        )
        assert phase["accounts"]["created"] > 0, phase
        assert phase["peak_rss_bytes"]["user-service"] > 0
        assert phase["peak_rss_bytes"]["auth-service"] > 0


@pytest.fixture(scope="module")
def no_hop_limit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    command = seed_command(["--no-hop"], tmp_path_factory.mktemp("limit") / "limit.log")
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
    # The SQLite store's writer thread, whatever the store names it.
    assert re.search(r"^ +\d+\.\d%  \S*sqlite\S*-writer$", out, re.MULTILINE)
    # The request path shows up under the event loops, our own code included.
    assert re.search(r"%  ServiceMiddleware\.__call__ \(servicekit/middleware\.py:\d+\)", out)
