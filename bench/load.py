"""Drive a service with wrk (or, for a smoke run only, a small Python generator).

Every answer is checked, not only counted (see ``bench/wrk/*.lua``), and the load
generator's own CPU time is measured: it shares the machine's cores with the
service, so a result is only worth reading if the generator was not the
bottleneck.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tests.support.processes import clean_environment

from bench.commands import REPO_ROOT
from bench.services import CORES, machine_cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.services import Service

WRK_SCRIPTS = Path(__file__).resolve().parent / "wrk"
WRK_TIMEOUT = "10s"
# wrk ends on its own after its duration; this only guards against a hang.
GRACE_SECONDS = 30.0

Kind = Literal["create", "get"]
Generator = Literal["wrk", "python"]


def wrk_path() -> str | None:
    """Return the path of ``wrk``, or ``None`` if it is not installed."""
    return shutil.which("wrk")


@dataclass(frozen=True)
class Measurement:
    """What one load run saw.

    Attributes:
        good: Answers that passed every check.
        errors: Answers that failed a check, and requests that failed (connection
            errors, timeouts).
        seconds: How long the load ran.
        p50_ms: Median latency, all answers.
        p99_ms: 99th-percentile latency, all answers.
        generator: Which load generator ran.
        generator_cpu: CPU time of the load generator over its wall time and all
            cores: 1.0 would be every core busy.
        service_cpu: CPU time of each watched service over the wall time, in cores
            (1.0 is one core busy).
        machine_cpu: CPU time of the whole machine over the wall time, in cores: what
            the generator and the watched services do not account for is other work.
        example: The first failed answer, if any.
    """

    good: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator: Generator
    generator_cpu: float
    service_cpu: dict[str, float] = field(default_factory=dict)
    machine_cpu: float = 0.0
    example: str = ""

    @property
    def rate(self) -> float:
        """Good answers per second."""
        return self.good / self.seconds if self.seconds else 0.0

    @property
    def other_cpu(self) -> float:
        """CPU used meanwhile by processes neither generating load nor watched, in cores."""
        return max(
            0.0, self.machine_cpu - self.generator_cpu * CORES - sum(self.service_cpu.values())
        )

    def to_json(self) -> dict[str, object]:
        """Return the measurement as plain JSON data."""
        return {
            "good": self.good,
            "errors": self.errors,
            "seconds": self.seconds,
            "requests_per_second": self.rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "generator": self.generator,
            "generator_cpu": self.generator_cpu,
            "service_cpu": self.service_cpu,
            "machine_cpu": self.machine_cpu,
            "other_cpu": self.other_cpu,
            "example": self.example,
        }


@dataclass(frozen=True)
class Load:
    """A load to run.

    Attributes:
        kind: ``"create"`` for ``POST /accounts`` with new usernames, ``"get"`` for
            ``GET /accounts/{id}`` of stored accounts.
        connections: Concurrent connections.
        seconds: How long to run, in whole seconds (wrk's unit).
        generator: ``"wrk"``, or ``"python"`` for a smoke run without wrk.
        wrk_threads: wrk's threads.
        prefix: Prefix of new usernames, unique to this run (``create``).
        stored: Accounts stored beforehand, with ids 1..stored (``get``).
        token_file: The file of the client token that every request presents
            (see :mod:`bench.clients`); none for a service that asks for none.
    """

    kind: Kind
    connections: int
    seconds: int
    generator: Generator = "wrk"
    wrk_threads: int = 1
    prefix: str = ""
    stored: int = 0
    token_file: Path | None = None


def drive(url: str, load: Load, *, results: Path, watch: Sequence[Service] = ()) -> Measurement:
    """Run ``load`` against ``url`` and check every answer.

    Args:
        url: The service's base URL.
        load: What to run.
        results: Where the generator writes its raw results (JSON); its console
            output goes beside it, with the suffix ``.out``.
        watch: Services whose CPU time to measure over the run.

    Returns:
        What the run saw.
    """
    command, environment = _command(url, load, results)
    run = run_generator(
        command,
        environment,
        name=load.generator,
        timeout=load.seconds + GRACE_SECONDS,
        results=results,
        watch=watch,
    )
    return measurement(run, load.generator)


@dataclass(frozen=True)
class GeneratorRun:
    """One run of a load generator that wrote its results as JSON.

    Attributes:
        raw: What it wrote.
        seconds: Its wall time.
        generator_cpu: Its CPU time over its wall time and all cores: 1.0 would be
            every core busy.
        service_cpu: CPU time of each watched service over the wall time, in cores.
        machine_cpu: CPU time of the whole machine over the wall time, in cores.
    """

    raw: dict[str, Any]
    seconds: float
    generator_cpu: float
    service_cpu: dict[str, float]
    machine_cpu: float


def run_generator(  # noqa: PLR0913 (the run's parts, by name)
    command: list[str],
    environment: dict[str, str],
    *,
    name: str,
    timeout: float,
    results: Path,
    watch: Sequence[Service] = (),
) -> GeneratorRun:
    """Run a load generator that writes its results to ``results``, and measure the CPU used.

    Args:
        command: Its command line.
        environment: Its environment.
        name: What errors call it.
        timeout: Seconds after which it is killed (it should end on its own).
        results: The JSON file it writes; its console output goes beside it,
            with the suffix ``.out``.
        watch: Services whose CPU time to measure over the run.

    Returns:
        What it wrote, and the CPU it and the services used.

    Raises:
        RuntimeError: If it failed, or wrote no results.
    """
    results.parent.mkdir(parents=True, exist_ok=True)
    results.unlink(missing_ok=True)
    before = {service.name: service.cpu_seconds() for service in watch}
    machine_before = machine_cpu_seconds()
    started = time.perf_counter()
    with results.with_suffix(".out").open("wb") as output:
        generator = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    exit_code, cpu_seconds = _wait(generator, timeout)
    wall = time.perf_counter() - started
    machine_cpu = (machine_cpu_seconds() - machine_before) / wall
    service_cpu = {
        service.name: (service.cpu_seconds() - before[service.name]) / wall for service in watch
    }
    if exit_code != 0 or not results.exists():
        output_text = results.with_suffix(".out").read_text(encoding="utf-8", errors="replace")
        msg = f"the load generator ({name}) exited with {exit_code}:\n{output_text}"
        raise RuntimeError(msg)
    return GeneratorRun(
        raw=json.loads(results.read_text(encoding="utf-8")),
        seconds=wall,
        generator_cpu=cpu_seconds / (wall * CORES),
        service_cpu=service_cpu,
        machine_cpu=machine_cpu,
    )


def measurement(run: GeneratorRun, generator: Generator) -> Measurement:
    """Return what a closed-loop run saw, from results with the keys ``bench/wrk`` writes.

    Args:
        run: The run.
        generator: Which generator it was.

    Returns:
        The measurement.
    """
    raw = run.raw
    failed_requests = sum(
        int(raw[name]) for name in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return Measurement(
        good=int(raw["good"]),
        errors=int(raw["bad"]) + failed_requests,
        seconds=int(raw["duration_us"]) / 1e6,
        p50_ms=int(raw["p50_us"]) / 1000,
        p99_ms=int(raw["p99_us"]) / 1000,
        generator=generator,
        generator_cpu=run.generator_cpu,
        service_cpu=run.service_cpu,
        machine_cpu=run.machine_cpu,
        example=str(raw["example"]),
    )


def _command(url: str, load: Load, results: Path) -> tuple[list[str], dict[str, str]]:
    if load.generator == "python":
        command = [
            sys.executable,
            "-m",
            "bench.pyload",
            "--url",
            url,
            "--kind",
            load.kind,
            "--connections",
            str(load.connections),
            "--seconds",
            str(load.seconds),
            "--results",
            str(results),
            "--prefix",
            load.prefix or "pyload",
            "--stored",
            str(max(load.stored, 1)),
            *(["--token-file", str(load.token_file)] if load.token_file else []),
        ]
        return command, clean_environment()
    wrk = wrk_path()
    if wrk is None:
        msg = "wrk is not installed (make bench installs it)"
        raise RuntimeError(msg)
    script = WRK_SCRIPTS / ("create_account.lua" if load.kind == "create" else "get_account.lua")
    command = [
        wrk,
        "--threads",
        str(min(load.wrk_threads, load.connections)),
        "--connections",
        str(load.connections),
        "--duration",
        f"{load.seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "--script",
        str(script),
        url,
    ]
    environment = clean_environment(
        {
            "BENCH_WRK_LIB": str(WRK_SCRIPTS),
            "BENCH_WRK_RESULTS": str(results),
            "BENCH_WRK_PREFIX": load.prefix,
            "BENCH_WRK_STORED": str(load.stored),
            "BENCH_WRK_TOKEN_FILE": str(load.token_file or ""),
        }
    )
    return command, environment


def _wait(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for ``process`` and return its exit code and the CPU time it used.

    ``os.wait4`` reaps the process and returns its resource usage at once, which
    ``/proc`` can no longer tell once the process has ended.
    """
    guard = threading.Timer(timeout, process.kill)
    guard.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        guard.cancel()
    # Popen must not wait for a process that is already reaped.
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime
