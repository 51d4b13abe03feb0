"""The four measurements: designs, auth-service's hash rate, the contract suite, growth.

Each comparison runs its variants interleaved within a round (the order turning
by one each round, so that none always runs first or last) and keeps every
round, to report the median.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from xml.etree import ElementTree as ET

from bench.load import REPO_ROOT, Generator, Load, Measurement, drive
from bench.processes import (
    CORES,
    HOST,
    Command,
    Service,
    clean_environment,
    free_port,
    running,
    venv_command,
)
from bench.seed_design import SYNC_CLIENT
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from collections.abc import Sequence

_T = TypeVar("_T")

USER_SERVICE = "user-service"
SEED_DESIGN = "seed design"
NO_HOP_LIMIT = "no-hop limit"
AUTH_LATENCIES_MS = (0, 10)
GROWTH_LATENCY_MS = 0
AUTH_SCRIPT = Path(__file__).resolve().parent / "auth_throughput.py"
CONTRACT_TESTS = "tests/contracts"
AUTH_TIMEOUT_SECONDS = 600.0
CONTRACTS_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class RunConfig:
    """How to run the benchmarks.

    Attributes:
        seconds: Length of each measurement.
        rounds: Rounds of each comparison; the report gives the median.
        connections: Concurrent connections of the load.
        generator: The load generator.
        wrk_threads: wrk's threads.
        sizes: Accounts stored beforehand, for the growth measurement.
        smoke: A quick run that only checks that everything works.
        warmup_seconds: Load run, and not measured, on a service that has just started.
        run_folder: Where raw results go (load generator output, log tails).
        scratch: Where databases and full logs go; removed after the run.
    """

    seconds: int
    rounds: int
    connections: int
    generator: Generator
    wrk_threads: int
    sizes: tuple[int, ...]
    smoke: bool
    warmup_seconds: int
    run_folder: Path
    scratch: Path

    def load(self, kind: str, *, seconds: int | None = None, stored: int = 0) -> Load:
        """Return a load of ``kind`` (``"create"`` or ``"get"``) with this run's settings."""
        return Load(
            kind="create" if kind == "create" else "get",
            connections=self.connections,
            seconds=self.seconds if seconds is None else seconds,
            generator=self.generator,
            wrk_threads=self.wrk_threads,
            # Lowercase letters and digits only: canonical already, so answers echo it as sent.
            prefix=f"b{secrets.token_hex(4)}x",
            stored=stored,
        )


@dataclass
class Series:
    """The measurements of one variant, one a round.

    Attributes:
        label: What the report calls the variant.
        measurements: One a round.
        peak_rss_bytes: Peak resident memory of the service over all rounds.
    """

    label: str
    measurements: list[Measurement] = field(default_factory=list)
    peak_rss_bytes: int = 0

    @property
    def rate(self) -> float:
        """Median good answers per second."""
        return _median([m.rate for m in self.measurements])

    @property
    def p50_ms(self) -> float:
        """Median of the rounds' median latencies."""
        return _median([m.p50_ms for m in self.measurements])

    @property
    def p99_ms(self) -> float:
        """Median of the rounds' 99th-percentile latencies."""
        return _median([m.p99_ms for m in self.measurements])

    @property
    def errors(self) -> int:
        """Errors of all rounds, added up."""
        return sum(m.errors for m in self.measurements)

    @property
    def generator_cpu(self) -> float:
        """The load generator's largest share of the machine's CPU over the rounds."""
        return max((m.generator_cpu for m in self.measurements), default=0.0)

    def service_cpu(self, name: str) -> float:
        """Median CPU of the service ``name`` over the rounds, in cores."""
        return _median([m.service_cpu.get(name, 0.0) for m in self.measurements])

    @property
    def other_cpu(self) -> float:
        """Largest CPU used by other processes during a round, in cores."""
        return max((m.other_cpu for m in self.measurements), default=0.0)

    @property
    def example(self) -> str:
        """The first failed answer of any round."""
        return next((m.example for m in self.measurements if m.example), "")

    def to_json(self) -> dict[str, object]:
        """Return the series as plain JSON data."""
        return {
            "label": self.label,
            "requests_per_second": self.rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
            "peak_rss_bytes": self.peak_rss_bytes,
            "generator_cpu": self.generator_cpu,
            "other_cpu": self.other_cpu,
            "rounds": [m.to_json() for m in self.measurements],
        }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _turned(items: Sequence[_T], by: int) -> list[_T]:
    """Return ``items`` turned left by ``by``, so each round starts with another one."""
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


# -- 1. POST /accounts: user-service, the seed's design, the no-hop limit ---------------------


@dataclass(frozen=True)
class Variant:
    """A design at an auth latency (``None``: no hop, so no latency)."""

    design: str
    latency_ms: int | None

    @property
    def label(self) -> str:
        """The variant's name in the report."""
        if self.latency_ms is None:
            return f"{self.design} (no hop)"
        return f"{self.design} @ {self.latency_ms} ms auth"


@dataclass
class DesignResults:
    """What scenario 1 measured.

    Attributes:
        series: Each variant's measurements.
        acknowledged: Per auth latency, the 201s user-service sent (warm-up included).
        stored: Per auth latency, the accounts in user-service's database once stopped.
        sync_client: The synchronous HTTP client of the seed's design.
    """

    series: dict[Variant, Series]
    acknowledged: dict[int, int]
    stored: dict[int, int]
    sync_client: str = SYNC_CLIENT


def designs(config: RunConfig) -> DesignResults:
    """Measure ``POST /accounts`` on user-service, the seed's design and the no-hop limit.

    Every service runs for the whole scenario; the variants take turns within
    each round.

    Args:
        config: How to run.

    Returns:
        The measurements.
    """
    folder = config.scratch / "designs"
    stand_ins = {latency: stand_in_command(latency, folder) for latency in AUTH_LATENCIES_MS}
    databases = {latency: folder / f"user-service-{latency}ms.db" for latency in AUTH_LATENCIES_MS}
    commands: dict[Variant, Command] = {}
    for latency in AUTH_LATENCIES_MS:
        auth_url = _url(stand_ins[latency])
        commands[Variant(USER_SERVICE, latency)] = user_service_command(
            auth_url, databases[latency], folder / f"user-service-{latency}ms.log"
        )
        commands[Variant(SEED_DESIGN, latency)] = _seed_command(
            ["--auth-url", auth_url], folder / f"seed-{latency}ms.log"
        )
    commands[Variant(NO_HOP_LIMIT, None)] = _seed_command(["--no-hop"], folder / "limit.log")
    variants = list(commands)
    series = {variant: Series(variant.label) for variant in variants}
    acknowledged = dict.fromkeys(AUTH_LATENCIES_MS, 0)
    with running(*stand_ins.values(), *commands.values()) as started:
        auth = dict(zip(AUTH_LATENCIES_MS, started[: len(stand_ins)], strict=True))
        services = dict(zip(variants, started[len(stand_ins) :], strict=True))
        try:
            for round_number in range(-1 if config.warmup_seconds else 0, config.rounds):
                for variant in _turned(variants, round_number):
                    watch = [services[variant]]
                    if variant.latency_ms is not None:
                        watch.append(auth[variant.latency_ms])
                    warmup = round_number < 0
                    measurement = drive(
                        services[variant].base_url,
                        config.load("create", seconds=config.warmup_seconds if warmup else None),
                        results=config.run_folder
                        / "designs"
                        / f"{_slug(variant.label)}-{'warmup' if warmup else round_number}.json",
                        watch=watch,
                    )
                    if variant.design == USER_SERVICE and variant.latency_ms is not None:
                        acknowledged[variant.latency_ms] += measurement.good
                    if not warmup:
                        series[variant].measurements.append(measurement)
            for variant, service in services.items():
                series[variant].peak_rss_bytes = service.peak_rss_bytes()
        finally:
            _keep_log_tails(started, config.run_folder / "designs")
    stored = {latency: _count_accounts(path) for latency, path in databases.items()}
    return DesignResults(series, acknowledged, stored)


def stand_in_command(latency_ms: int, folder: Path) -> Command:
    """Return how to start a stand-in auth-service answering after ``latency_ms``, on a free port.

    Args:
        latency_ms: Its latency.
        folder: Where its log goes.

    Returns:
        The command.
    """
    port = free_port()
    return Command(
        f"stand-in auth-service ({latency_ms} ms)",
        [
            sys.executable,
            "-m",
            "bench.stand_in_auth",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
        ],
        port,
        folder / f"stand-in-auth-{latency_ms}ms.log",
        env=clean_environment({"PYTHONPATH": str(REPO_ROOT)}),
    )


def _seed_command(arguments: list[str], log_path: Path) -> Command:
    port = free_port()
    return Command(
        log_path.stem,
        [sys.executable, "-m", "bench.seed_design", "--port", str(port), *arguments],
        port,
        log_path,
        env=clean_environment({"PYTHONPATH": str(REPO_ROOT)}),
    )


def user_service_command(auth_url: str, database: Path, log_path: Path) -> Command:
    """Return how to start ``user-service serve`` exactly as shipped, on a free port.

    One worker per usable core, logs, metrics and request ids: all as by
    default; the logs go to ``log_path``.

    Args:
        auth_url: auth-service's base URL.
        database: The SQLite file.
        log_path: Where its output goes.

    Returns:
        The command.
    """
    port = free_port()
    executable = venv_command("user-service")
    program = [executable] if Path(executable).exists() else [sys.executable, "-m", "user_service"]
    return Command(
        log_path.stem,
        [*program, "serve", "--host", HOST, "--port", str(port), "--log-level", "INFO"],
        port,
        log_path,
        env=clean_environment(
            {
                "USER_SERVICE_AUTH_URL": auth_url,
                "USER_SERVICE_DATABASE_URL": f"sqlite:///{database.absolute()}",
            }
        ),
        workers=CORES,
    )


def _url(command: Command) -> str:
    return f"http://{HOST}:{command.port}"


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _count_accounts(database: Path) -> int:
    with closing(sqlite3.connect(database)) as connection:
        (count,) = connection.execute("SELECT count(*) FROM accounts").fetchone()
    return int(count)


def _keep_log_tails(services: Sequence[Service], folder: Path) -> None:
    """Keep the end of each service's log with the raw results (the full logs are large)."""
    folder.mkdir(parents=True, exist_ok=True)
    for service in services:
        (folder / service.log_path.name).write_text(service.log_tail(), encoding="utf-8")


# -- 2. auth-service validations/s against the raw argon2id rate ------------------------------


@dataclass
class AuthResults:
    """What the colleague's ``bench/auth_throughput.py`` printed.

    Attributes:
        exit_code: Its exit code (1 if an answer was wrong).
        rows: Its table, metric to value.
        table: Its table as printed.
        errors: What it wrote to standard error.
        seconds: How long it ran.
    """

    exit_code: int
    rows: dict[str, str]
    table: str
    errors: str
    seconds: float

    def row(self, prefix: str) -> str | None:
        """Return the value of the first metric whose name starts with ``prefix``."""
        return next((value for name, value in self.rows.items() if name.startswith(prefix)), None)


def auth_throughput(config: RunConfig) -> AuthResults:
    """Run ``bench/auth_throughput.py`` with this run's length, rounds and connections.

    Args:
        config: How to run.

    Returns:
        What it printed.
    """
    arguments = (
        ["--smoke", "--clients", str(config.connections)]
        if config.smoke
        else [
            "--clients",
            str(config.connections),
            "--seconds",
            str(config.seconds),
            "--rounds",
            str(config.rounds),
        ]
    )
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(AUTH_SCRIPT), *arguments],
        cwd=REPO_ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=AUTH_TIMEOUT_SECONDS,
    )
    seconds = time.perf_counter() - started
    folder = config.run_folder / "auth"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "auth_throughput.out").write_text(completed.stdout, encoding="utf-8")
    (folder / "auth_throughput.err").write_text(completed.stderr, encoding="utf-8")
    rows = {}
    for line in completed.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in {"metric", "---"}:  # noqa: PLR2004
            rows[cells[0]] = cells[1]
    return AuthResults(
        completed.returncode, rows, completed.stdout, completed.stderr.strip(), seconds
    )


# -- 3. The contract suite ---------------------------------------------------------------------


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
    """What scenario 3 measured.

    Attributes:
        runs: One a round.
        selection: The tests run, as given to pytest.
    """

    runs: list[ContractRun]
    selection: list[str]

    def median(self, attribute: str) -> float:
        """Median of a numeric attribute of :class:`ContractRun` over the rounds."""
        return _median([float(getattr(run, attribute)) for run in self.runs])


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


# -- 4. Cost as work grows: 10k, 100k, 1M stored accounts --------------------------------------


@dataclass
class GrowthResults:
    """What scenario 4 measured.

    Attributes:
        create: ``POST /accounts`` per number of accounts stored beforehand.
        get: ``GET /accounts/{id}`` per number of accounts stored beforehand.
        seed_seconds: Time taken to store the accounts, per number.
    """

    create: dict[int, Series]
    get: dict[int, Series]
    seed_seconds: dict[int, float]


def growth(config: RunConfig) -> GrowthResults:
    """Measure user-service over databases already holding ``config.sizes`` accounts.

    Each round starts user-service afresh on a copy of a database seeded once
    (one service per size, measured in turn), so every round sees the same
    number of accounts; auth-service is a
    stand-in without latency, so that the store's cost is not hidden behind it.

    Args:
        config: How to run.

    Returns:
        The measurements.
    """
    folder = config.scratch / "growth"
    folder.mkdir(parents=True, exist_ok=True)
    seeded: dict[int, Path] = {}
    seed_seconds: dict[int, float] = {}
    for size in config.sizes:
        seeding_started = time.perf_counter()
        seeded[size] = seed_database(folder / f"seeded-{size}.db", size)
        seed_seconds[size] = time.perf_counter() - seeding_started
    create = {size: Series(f"POST /accounts, {size:,} stored") for size in config.sizes}
    get = {size: Series(f"GET /accounts/{{id}}, {size:,} stored") for size in config.sizes}
    results = config.run_folder / "growth"
    with running(stand_in_command(GROWTH_LATENCY_MS, folder)) as (auth,):
        for round_number in range(config.rounds):
            commands = []
            for size in config.sizes:
                working = folder / f"working-{size}.db"
                for stale in folder.glob(f"{working.name}*"):
                    stale.unlink()
                shutil.copyfile(seeded[size], working)
                commands.append(
                    user_service_command(
                        auth.base_url, working, folder / f"user-service-{size}.log"
                    )
                )
            with running(*commands) as started:
                services = dict(zip(config.sizes, started, strict=True))
                try:
                    for size in _turned(config.sizes, round_number):
                        service = services[size]
                        if config.warmup_seconds:
                            drive(
                                service.base_url,
                                config.load("create", seconds=config.warmup_seconds),
                                results=results / f"warmup-{size}-{round_number}.json",
                            )
                        for kind, series in (("create", create), ("get", get)):
                            series[size].measurements.append(
                                drive(
                                    service.base_url,
                                    config.load(kind, stored=size),
                                    results=results / f"{kind}-{size}-{round_number}.json",
                                    watch=[service, auth],
                                )
                            )
                        peak = service.peak_rss_bytes()
                        for series in (create, get):
                            series[size].peak_rss_bytes = max(series[size].peak_rss_bytes, peak)
                finally:
                    _keep_log_tails(started, results)
    return GrowthResults(create, get, seed_seconds)


def seed_database(path: Path, count: int) -> Path:
    """Create user-service's schema in ``path`` and store ``count`` accounts in one transaction.

    The accounts have ids 1..count and usernames ``seeded`` followed by the id on
    seven digits, which the ``GET`` load checks; in that order the unique index
    on usernames is filled from left to right, which keeps a million rows to
    seconds.

    Args:
        path: The database file; replaced if it exists.
        count: How many accounts to store.

    Returns:
        ``path``.
    """
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    asyncio.run(_create_schema(path))
    created_at = datetime.now(UTC).isoformat(timespec="microseconds")
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO accounts (id, username, created_at) VALUES (?, ?, ?)",
            ((number, f"seeded{number:07d}", created_at) for number in range(1, count + 1)),
        )
        connection.execute("COMMIT")
        # Fold the WAL into the file, so that copying the file alone copies everything.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


async def _create_schema(path: Path) -> None:
    store = SqliteAccountStore(path)
    await store.open()
    await store.close()
