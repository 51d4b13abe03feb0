"""The services a benchmark runs, as processes of their own, and what they cost.

:func:`running` starts them together on free ports and stops them all at the
end, with the process helpers the tests use (:mod:`tests.support.processes`);
a :class:`Service` reads its CPU time and peak memory from ``/proc``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.processes import (
    HOST,
    clean_environment,
    log_size,
    log_tail,
    process_tree,
    start,
    stop,
    wait_for_port,
    wait_for_startups,
    worker_count,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Mapping, Sequence

CORES = len(os.sched_getaffinity(0))
"""The cores this process may use: what user-service starts a worker for, each."""


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
        return sum(process_cpu_seconds(pid) or 0.0 for pid in process_tree(self.process.pid))

    def peak_rss_bytes(self) -> int:
        """Return the peak resident memory of the process (and its children, added up)."""
        return sum(peak_rss_bytes(pid) for pid in process_tree(self.process.pid))

    def reset_peak_rss(self) -> bool:
        """Start the peak resident memory of the process and its children afresh.

        Returns:
            Whether every process of the tree could be reset.
        """
        reset = [reset_peak_rss(pid) for pid in process_tree(self.process.pid)]
        return all(reset)

    def workers(self) -> int:
        """Return the processes serving: its workers, or 1 if it serves by itself."""
        return max(1, worker_count(self.process.pid))

    def log_tail(self) -> str:
        """Return the last lines of the service's log."""
        return log_tail(self.log_path)


@dataclass(frozen=True)
class Command:
    """How to start a service.

    Attributes:
        name: What the report calls it.
        args: The command line.
        port: The port it will listen on.
        log_path: Where its standard output and error go, never the terminal.
        env: Its whole environment; :func:`~tests.support.processes.clean_environment`
            when omitted.
        workers: Its worker processes: start-up waits until each has started its
            app, lest the first one up be handed every connection of the load.
            ``None``: as many as it starts (see
            :func:`~tests.support.processes.worker_count`).
    """

    name: str
    args: list[str]
    port: int
    log_path: Path
    env: Mapping[str, str] | None = None
    workers: int | None = 1

    @property
    def base_url(self) -> str:
        """The base URL the service will answer on, ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"


@contextmanager
def running(*commands: Command) -> Iterator[list[Service]]:
    """Start services together, wait until each accepts connections, and stop them all at exit.

    Args:
        commands: The services to start.

    Yields:
        The running services, in the order of ``commands``.
    """
    services: list[Service] = []
    log_starts: list[int] = []
    try:
        for command in commands:
            log_starts.append(log_size(command.log_path))
            environment = command.env if command.env is not None else clean_environment()
            process = start(command.args, log_path=command.log_path, env=environment)
            services.append(Service(command.name, process, command.port, command.log_path))
        for service, command, log_start in zip(services, commands, log_starts, strict=True):
            wait_for_port(
                service.port, process=service.process, log_path=service.log_path, name=service.name
            )
            if command.workers != 1:
                wait_for_startups(
                    service.log_path,
                    command.workers,
                    service.process,
                    log_start=log_start,
                    name=service.name,
                )
        yield services
    finally:
        stop(*(service.process for service in services))


def keep_log_tails(services: Sequence[Service], folder: Path) -> None:
    """Keep the end of each service's log with the raw results (the full logs are large)."""
    folder.mkdir(parents=True, exist_ok=True)
    for service in services:
        (folder / service.log_path.name).write_text(service.log_tail(), encoding="utf-8")


def process_cpu_seconds(pid: int) -> float | None:
    """Return the user and system CPU time of process ``pid``; ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
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


def reset_peak_rss(pid: int) -> bool:
    """Reset the peak resident set size of process ``pid`` to its current size (Linux 4.0+).

    Returns:
        Whether it was reset: ``False`` where ``/proc/PID/clear_refs`` cannot be written.
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


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
