"""Services as real processes on free ports, and what they cost: CPU time and peak memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
CORES = len(os.sched_getaffinity(0))
"""The cores this process may use: what user-service starts a worker for, each."""
STARTED = "Application startup complete."

# Settings a developer may have exported for their own runs; the benchmark sets its own.
_SERVICE_PREFIXES = ("USER_SERVICE_", "AUTH_SERVICE_", "FRONTEND_WEB_")


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without service settings, plus ``extra``.

    Args:
        extra: Variables to set.

    Returns:
        The environment for a child process.
    """
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(_SERVICE_PREFIXES)
    }
    environment.setdefault("PACT_DO_NOT_TRACK", "true")
    return {**environment, **(extra or {})}


def venv_command(name: str) -> str:
    """Return the path of a console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / name)


@dataclass
class Service:
    """A service running as a process of its own.

    Attributes:
        name: What the report calls it.
        process: The process.
        port: The port it listens on.
        log_path: Where its standard output and error go.
    """

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        """The service's base URL, ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """Return the CPU time (user and system) used so far by the process and its children."""
        return sum(process_cpu_seconds(pid) for pid in process_tree(self.process.pid))

    def peak_rss_bytes(self) -> int:
        """Return the peak resident memory of the process (and its children, added up)."""
        return sum(peak_rss_bytes(pid) for pid in process_tree(self.process.pid))

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the service's log."""
        try:
            with self.log_path.open(encoding="utf-8", errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except OSError:
            return ""


@dataclass(frozen=True)
class Command:
    """How to start a service.

    Attributes:
        name: What the report calls it.
        args: The command line.
        port: The port it will listen on.
        log_path: Where its standard output and error go, never the terminal.
        env: Its whole environment; :func:`clean_environment` when omitted.
        workers: Its worker processes: start-up waits until each has started its
            app, lest the first one up be handed every connection of the load.
    """

    name: str
    args: list[str]
    port: int
    log_path: Path
    env: Mapping[str, str] | None = None
    workers: int = 1


@contextmanager
def running(*commands: Command) -> Iterator[list[Service]]:
    """Start services together, wait until each accepts connections, and stop them all at exit.

    Args:
        commands: The services to start.

    Yields:
        The running services, in the order of ``commands``.
    """
    services: list[Service] = []
    starts: list[tuple[int, int]] = []
    try:
        for command in commands:
            command.log_path.parent.mkdir(parents=True, exist_ok=True)
            with command.log_path.open("ab") as log:
                log_start = log.tell()
                process = subprocess.Popen(
                    command.args,
                    env=dict(command.env) if command.env is not None else clean_environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            services.append(Service(command.name, process, command.port, command.log_path))
            starts.append((log_start, command.workers))
        for service, (log_start, workers) in zip(services, starts, strict=True):
            wait_for_port(service)
            if workers > 1:
                wait_for_startups(service, workers, log_start)
        yield services
    finally:
        stop(*(service.process for service in services))


def wait_for_port(service: Service, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Wait until ``service`` accepts connections.

    uvicorn listens only once the app's start-up (opening its store) has finished,
    so a connection accepted means the service is ready.

    Raises:
        RuntimeError: If the process exits first, or does not listen within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            msg = (
                f"{service.name} exited with {service.process.returncode} before listening;"
                f" its log ends with:\n{service.log_tail()}"
            )
            raise RuntimeError(msg)
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((HOST, service.port)) == 0:
                return
        time.sleep(0.02)
    msg = f"{service.name} did not listen on {HOST}:{service.port} within {timeout} s"
    raise RuntimeError(msg)


def wait_for_startups(
    service: Service, workers: int, log_start: int, timeout: float = START_TIMEOUT_SECONDS
) -> None:
    """Wait until ``workers`` workers of ``service`` have logged that their app started.

    Args:
        service: The service.
        workers: How many workers it runs.
        log_start: Where in its log this run of it began.
        timeout: Seconds to wait.

    Raises:
        RuntimeError: If the process exits first, or its workers do not start within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        with service.log_path.open("rb") as log:
            log.seek(log_start)
            if log.read().decode("utf-8", "replace").count(STARTED) >= workers:
                return
        if service.process.poll() is not None or time.monotonic() > deadline:
            msg = (
                f"{service.name}: {workers} workers did not start within {timeout} s;"
                f" its log ends with:\n{service.log_tail()}"
            )
            raise RuntimeError(msg)
        time.sleep(0.02)


def stop(*processes: subprocess.Popen[bytes]) -> None:
    """Stop processes gracefully (SIGTERM), killing any that does not stop in time."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` and all its descendants that are alive (Linux ``/proc``)."""
    found = [pid]
    index = 0
    while index < len(found):
        task_folder = Path(f"/proc/{found[index]}/task")
        index += 1
        try:
            tasks = list(task_folder.iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = (task / "children").read_text(encoding="ascii").split()
            except OSError:
                continue
            found.extend(int(child) for child in children)
    return found


def process_cpu_seconds(pid: int) -> float:
    """Return the user and system CPU time of process ``pid``; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    # The command name is in parentheses and may hold spaces: count fields after it.
    fields = stat.rpartition(")")[2].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    """Return the peak resident set size (``VmHWM``) of process ``pid``; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_cpu_seconds() -> float:
    """Return the CPU time all cores have spent busy since boot (``/proc/stat``); 0 if unknown."""
    try:
        with Path("/proc/stat").open(encoding="ascii") as stat:
            fields = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")
