"""How close auth-service comes to the raw argon2id rate of the machine it runs on.

Starts ``auth-service serve`` as a real process on a free port, over a
temporary SQLite file holding one user added with ``auth-service users add``,
and drives it with concurrent clients, checking every answer (status and
body). In the same run it measures the raw argon2id verification rate of the
same parameters on the same cores: one thread per core, each verifying one
hash in a loop, while the service is idle. The two alternate in rounds, so
that both see the same background load on a shared machine. It prints a
markdown table of both and their ratio, and exits 1 if any answer was wrong.

Run it with the project's interpreter::

    .venv/bin/python bench/auth_throughput.py            # 32 clients, 10 s of each
    .venv/bin/python bench/auth_throughput.py --clients 64 --seconds 30
    .venv/bin/python bench/auth_throughput.py --smoke    # 1 s of each, for tests

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
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from argon2 import PasswordHasher, Type

from auth_service.settings import Settings
from servicekit.http_client import HttpClient, HttpClientError

USERNAME = "bench"
PASSWORD = "correct horse battery staple"  # noqa: S105 (a throwaway user in a temporary database)
EXPECTED = {"valid": True, "subject": USERNAME}
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_EXAMPLES = 3


@dataclass
class Load:
    """What the clients saw.

    Attributes:
        clients: Concurrent clients.
        latencies: Seconds per validation answered as expected.
        errors: Answers with another status or body, and failed requests.
        examples: The first few errors, for the report.
        seconds: Time spent driving the service, until the last answer of each round.
        service_cpu_seconds: CPU time the service process used meanwhile, if known.
        client_cpu_seconds: CPU time this process (the clients) used meanwhile.
    """

    clients: int
    latencies: list[float] = field(default_factory=list)
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


@dataclass
class RawRate:
    """The raw argon2id verification rate.

    Attributes:
        threads: Threads that verify, one per core.
        verifications: Verifications done, all threads together.
        seconds: Time spent verifying.
        cpu_seconds: CPU time spent verifying, all threads together.
    """

    threads: int
    verifications: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0


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
        environment = {
            **os.environ,
            "AUTH_SERVICE_DATABASE_URL": f"sqlite:///{Path(folder) / 'auth.db'}",
        }
        _add_user(environment)
        port = _free_port()
        with (Path(folder) / "serve.log").open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "auth_service", "serve", "--port", str(port)],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                load, raw = runner.run(
                    _measure(
                        f"http://{HOST}:{port}",
                        server,
                        settings,
                        clients=arguments.clients,
                        round_seconds=seconds / rounds,
                        rounds=rounds,
                    )
                )
        finally:
            _stop(server)
    sys.stdout.write(_table(load, raw, settings, seconds))
    for example in load.examples:
        sys.stderr.write(f"error: {example}\n")
    return 0 if load.errors == 0 and load.latencies else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def _measure(  # noqa: PLR0913 (the run's parameters, by name)
    base_url: str,
    server: subprocess.Popen[bytes],
    settings: Settings,
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
    raw = RawRate(threads=os.cpu_count() or 1)
    await _wait_until_ready(base_url, server)
    # The lean client of the services themselves: the clients share the cores
    # with auth-service, so the less CPU they take, the less they distort.
    http = HttpClient(
        base_url,
        connect_timeout=REQUEST_TIMEOUT_SECONDS,
        timeout=REQUEST_TIMEOUT_SECONDS,
        max_connections=clients,
    )
    await http.open()
    try:
        for _ in range(rounds):
            service_cpu = _process_cpu_seconds(server.pid)
            client_cpu = time.process_time()
            started = time.perf_counter()
            deadline = started + round_seconds
            await asyncio.gather(*(_client(http, deadline, load) for _ in range(clients)))
            load.seconds += time.perf_counter() - started
            load.client_cpu_seconds += time.process_time() - client_cpu
            service_cpu_after = _process_cpu_seconds(server.pid)
            if load.service_cpu_seconds is None or service_cpu is None or service_cpu_after is None:
                load.service_cpu_seconds = None
            else:
                load.service_cpu_seconds += service_cpu_after - service_cpu
            # Nothing else runs meanwhile: the service is idle and the clients wait.
            await asyncio.to_thread(_verify_raw, hasher, password_hash, round_seconds, raw)
    finally:
        await http.close()
    return load, raw


async def _wait_until_ready(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            msg = f"auth-service serve exited with {server.returncode} before it was ready"
            raise RuntimeError(msg)
        if await asyncio.to_thread(_answers_ready, base_url):
            return
        await asyncio.sleep(0.05)
    msg = f"auth-service was not ready within {START_TIMEOUT_SECONDS} s"
    raise RuntimeError(msg)


def _answers_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)  # noqa: PLR2004
    except OSError:  # refused, or an HTTP error status
        return False


async def _client(http: HttpClient, deadline: float, load: Load) -> None:
    body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        try:
            response = await http.post("/auth/validate", body, headers=headers)
            answer = json.loads(response.body)
        except (HttpClientError, ValueError) as error:
            load.fail(f"{type(error).__name__}: {error}")
            continue
        if response.status != 200 or answer != EXPECTED:  # noqa: PLR2004
            load.fail(f"{response.status} {answer}")
            continue
        load.latencies.append(time.perf_counter() - sent)


def _verify_raw(hasher: PasswordHasher, password_hash: str, seconds: float, raw: RawRate) -> None:
    """Verify ``password_hash`` in a loop on ``raw.threads`` threads for ``seconds``."""
    start = threading.Barrier(raw.threads)

    def verify_in_a_loop() -> int:
        start.wait()
        deadline = time.perf_counter() + seconds
        done = 0
        while time.perf_counter() < deadline:
            hasher.verify(password_hash, PASSWORD)
            done += 1
        return done

    started = time.perf_counter()
    cpu = time.process_time()
    with ThreadPoolExecutor(max_workers=raw.threads) as pool:
        raw.verifications += sum(pool.map(lambda _: verify_in_a_loop(), range(raw.threads)))
    raw.seconds += time.perf_counter() - started
    raw.cpu_seconds += time.process_time() - cpu


def _process_cpu_seconds(pid: int) -> float | None:
    """Return the CPU time (user and system) of process ``pid``, on Linux; else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rpartition(")")[2].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _table(load: Load, raw: RawRate, settings: Settings, seconds: float) -> str:
    rate = len(load.latencies) / load.seconds if load.seconds else 0.0
    raw_rate = raw.verifications / raw.seconds if raw.seconds else 0.0
    if len(load.latencies) >= 2:  # noqa: PLR2004 (quantiles need two points)
        percentiles = statistics.quantiles(load.latencies, n=100, method="inclusive")
        p50, p99 = f"{percentiles[49] * 1000:.1f}", f"{percentiles[98] * 1000:.1f}"
    else:
        p50 = p99 = "n/a"
    validations = len(load.latencies)
    raw_cpu_ms = raw.cpu_seconds / raw.verifications * 1000 if raw.verifications else None
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


if __name__ == "__main__":
    raise SystemExit(main())
