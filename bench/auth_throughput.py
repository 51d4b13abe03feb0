"""auth-service alone: how close its validations/s come to the raw argon2id rate (``auth``).

Starts ``auth-service serve`` as a real process on a free port, over a
temporary SQLite file holding one user added with ``auth-service users add``
and one client, the load, registered with ``auth-service clients add``
(:mod:`bench.clients`), and drives it with concurrent clients, each presenting
the load's token and checking every answer (status and body). In the same
run it measures the raw argon2id verification rate of the same parameters on
the same cores: one thread per core, each verifying one hash in a loop, while
the service is idle. The two alternate in rounds, so that both see the same
background load on a shared machine. It prints a markdown table of both and
their ratio, and exits 1 if any answer was wrong.
An overload answer (``503``, ``"code": "overloaded"``, a valid ``Retry-After``)
is right, not wrong: it is counted as refused, and its client waits as told.

Run it from the repository's root with the project's interpreter::

    .venv/bin/python -m bench.auth_throughput            # 32 clients, 10 s of each
    .venv/bin/python -m bench.auth_throughput --clients 64 --seconds 30
    .venv/bin/python -m bench.auth_throughput --smoke    # 1 s of each, for tests

``python -m bench`` runs it as its ``auth`` scenario (:func:`auth_throughput`)
and reads its table.

The argon2id parameters are the service's settings (``AUTH_SERVICE_ARGON2_*``,
by default the OWASP minimum), read by the service and this script alike.
The clients run on the same machine, so their CPU time counts against the
service. On a machine shared with other work, the wall-clock ratio moves with
that work; the CPU ratio (the CPU time of a raw verification over the CPU
time the service process spends per validation, from ``/proc`` on Linux)
hardly does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import uvloop
from argon2 import PasswordHasher, Type
from tests.support.processes import HOST, START_TIMEOUT_SECONDS, clean_environment, free_port

from auth_service.settings import Settings
from bench.clients import LOAD, add_client, authorization
from bench.commands import REPO_ROOT
from bench.raw_rate import RawRate, verify_raw
from bench.services import CORES, Command, Service, process_cpu_seconds, running
from servicekit.retry_after import parse_retry_after

if TYPE_CHECKING:
    from bench.runs import RunConfig

USERNAME = "bench"
PASSWORD = "correct horse battery staple"  # noqa: S105 (a throwaway user in a temporary database)
EXPECTED = {"valid": True, "subject": USERNAME}
OVERLOADED = 503
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_EXAMPLES = 3
SCENARIO_TIMEOUT_SECONDS = 600.0


@dataclass
class Load:
    """What the clients saw.

    Attributes:
        clients: Concurrent clients.
        latencies: Seconds per validation answered as expected.
        refused: Overload answers (``503`` with ``Retry-After``), each followed by its wait.
        errors: Answers with another status or body, and failed requests.
        examples: The first few errors, for the report.
        seconds: Time spent driving the service, until the last answer of each round.
        service_cpu_seconds: CPU time the service process used meanwhile, if known.
        client_cpu_seconds: CPU time this process (the clients) used meanwhile.
    """

    clients: int
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    errors: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    service_cpu_seconds: float | None = 0.0
    client_cpu_seconds: float = 0.0

    def fail(self, example: str) -> None:
        """Count an error, keeping the first few examples."""
        self.errors += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table.

    Args:
        argv: The arguments; ``sys.argv[1:]`` if omitted.

    Returns:
        0 if every validation was answered as expected, else 1.
    """
    arguments = _parser().parse_args(argv)
    seconds: float = 1.0 if arguments.smoke else arguments.seconds
    rounds: int = 1 if arguments.smoke else arguments.rounds
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as folder:
        # This process's settings, AUTH_SERVICE_ARGON2_* included: the service hashes as told.
        environment = {
            **os.environ,
            "AUTH_SERVICE_DATABASE_URL": f"sqlite:///{Path(folder) / 'auth.db'}",
        }
        _add_user(environment)
        token_file = add_client(
            "auth-service",
            LOAD,
            environment,
            Path(folder) / f"{LOAD}-for-auth-service",
            command=[sys.executable, "-m", "auth_service"],
        )
        port = free_port()
        command = Command(
            "auth-service",
            [sys.executable, "-m", "auth_service", "serve", "--host", HOST, "--port", str(port)],
            port,
            Path(folder) / "serve.log",
            env=environment,
        )
        with (
            running(command) as (server,),
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        ):
            load, raw = runner.run(
                _measure(
                    server,
                    settings,
                    authorization(token_file),
                    clients=arguments.clients,
                    round_seconds=seconds / rounds,
                    rounds=rounds,
                )
            )
    sys.stdout.write(_table(load, raw, settings, seconds))
    for example in load.examples:
        sys.stderr.write(f"error: {example}\n")
    return 0 if load.errors == 0 and load.latencies else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.auth_throughput", description=__doc__.partition("\n\n")[0]
    )
    parser.add_argument(
        "--clients", type=int, default=32, help="concurrent clients (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="time of the load, and again of the raw measurement (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds in which load and raw measurement alternate (default: %(default)s)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="1 s of each in one round: check that it all runs"
    )
    return parser


def _add_user(environment: dict[str, str]) -> None:
    added = subprocess.run(
        [sys.executable, "-m", "auth_service", "users", "add", USERNAME],
        input=f"{PASSWORD}\n",
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=START_TIMEOUT_SECONDS,
    )
    if added.returncode != 0:
        msg = f"auth-service users add exited {added.returncode}: {added.stderr.strip()}"
        raise RuntimeError(msg)


async def _measure(  # noqa: PLR0913 (the run's parts, by name)
    server: Service,
    settings: Settings,
    headers: dict[str, str],
    *,
    clients: int,
    round_seconds: float,
    rounds: int,
) -> tuple[Load, RawRate]:
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )
    password_hash = hasher.hash(PASSWORD)
    load = Load(clients=clients)
    raw = RawRate(threads=CORES)
    pid = server.process.pid
    # One pooled session, one connection per client: the clients share the cores
    # with auth-service, and an argon2id check costs a hundred times their call.
    session = aiohttp.ClientSession(
        server.base_url,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        connector=aiohttp.TCPConnector(limit=clients),
        headers=headers,
    )
    async with session:
        for _ in range(rounds):
            service_cpu = process_cpu_seconds(pid)
            client_cpu = time.process_time()
            started = time.perf_counter()
            deadline = started + round_seconds
            await asyncio.gather(*(_client(session, deadline, load) for _ in range(clients)))
            load.seconds += time.perf_counter() - started
            load.client_cpu_seconds += time.process_time() - client_cpu
            service_cpu_after = process_cpu_seconds(pid)
            if load.service_cpu_seconds is None or service_cpu is None or service_cpu_after is None:
                load.service_cpu_seconds = None
            else:
                load.service_cpu_seconds += service_cpu_after - service_cpu
            # Nothing else runs meanwhile: the service is idle and the clients wait.
            await asyncio.to_thread(verify_raw, hasher, password_hash, PASSWORD, round_seconds, raw)
    return load, raw


async def _client(session: aiohttp.ClientSession, deadline: float, load: Load) -> None:
    body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        try:
            async with session.post("/auth/validate", data=body, headers=headers) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                answer = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            load.fail(f"{type(error).__name__}: {error}")
            continue
        if status == OVERLOADED and retry_after is not None and _overloaded(answer):
            load.refused += 1
            await asyncio.sleep(max(0.0, min(retry_after, deadline - time.perf_counter())))
            continue
        if status != 200 or answer != EXPECTED:  # noqa: PLR2004
            load.fail(f"{status} {answer}")
            continue
        load.latencies.append(time.perf_counter() - sent)


def _overloaded(answer: object) -> bool:
    return isinstance(answer, dict) and answer.get("code") == "overloaded"


def _table(load: Load, raw: RawRate, settings: Settings, seconds: float) -> str:
    rate = len(load.latencies) / load.seconds if load.seconds else 0.0
    raw_rate = raw.rate
    if len(load.latencies) >= 2:  # noqa: PLR2004 (quantiles need two points)
        percentiles = statistics.quantiles(load.latencies, n=100, method="inclusive")
        p50, p99 = f"{percentiles[49] * 1000:.1f}", f"{percentiles[98] * 1000:.1f}"
    else:
        p50 = p99 = "n/a"
    validations = len(load.latencies)
    raw_cpu_ms = raw.cpu_ms_per_verify
    service_cpu_ms = (
        load.service_cpu_seconds / validations * 1000
        if load.service_cpu_seconds is not None and validations
        else None
    )
    client_cpu_ms = load.client_cpu_seconds / validations * 1000 if validations else None
    parameters = (
        f"m={settings.argon2_memory_cost} KiB, t={settings.argon2_time_cost}, "
        f"p={settings.argon2_parallelism}"
    )
    rows = [
        ("argon2id", parameters),
        ("clients", str(load.clients)),
        ("seconds (of each)", f"{seconds:g}"),
        ("validations/s", f"{rate:.1f}"),
        ("p50 latency (ms)", p50),
        ("p99 latency (ms)", p99),
        ("refused (503 overloaded, then Retry-After waited)", str(load.refused)),
        ("errors", str(load.errors)),
        (f"raw verifies/s ({raw.threads} threads)", f"{raw_rate:.1f}"),
        ("ratio", f"{rate / raw_rate:.1%}" if raw_rate else "n/a"),
        ("service CPU per validation (ms)", _milliseconds(service_cpu_ms)),
        ("client CPU per validation (ms)", _milliseconds(client_cpu_ms)),
        ("raw CPU per verify (ms)", _milliseconds(raw_cpu_ms)),
        (
            "CPU ratio (raw per verify / service per validation)",
            f"{raw_cpu_ms / service_cpu_ms:.1%}" if raw_cpu_ms and service_cpu_ms else "n/a",
        ),
    ]
    lines = ["| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines) + "\n"


def _milliseconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# -- The ``auth`` scenario of ``python -m bench``: this module as a process ---------------------


@dataclass
class AuthResults:
    """What ``python -m bench.auth_throughput`` printed.

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
    """Run this module as a process with the run's length, rounds and connections.

    Its environment is clean: auth-service runs with its default settings.

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
        [sys.executable, "-m", "bench.auth_throughput", *arguments],
        cwd=REPO_ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=SCENARIO_TIMEOUT_SECONDS,
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


if __name__ == "__main__":
    raise SystemExit(main())
