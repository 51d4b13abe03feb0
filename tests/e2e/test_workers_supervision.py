"""``serve --workers N``: connections spread over the workers, which are watched by a supervisor.

The supervisor restarts a worker that dies, refuses a port already taken,
stops when a worker cannot start, and its workers end when it is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.servers import (
    HOST,
    free_port,
    run_process,
    venv_command,
    wait_for_startups,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

WORKERS = 2
GONE_TIMEOUT = 10.0
CONNECTIONS = 64
STARTUP_FAILURE = 3
SHUTDOWN = "Application shutdown complete."


def worker_pids(supervisor: int) -> list[int]:
    """The pids of the uvicorn workers the supervisor started (not multiprocessing's helpers)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def workers_serving(tmp_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``user-service serve --workers 2`` until both workers are up."""
    log_path = tmp_path / "user-service.log"
    command = [venv_command("user-service"), "serve", "--host", HOST, "--port", str(port)]
    env = {"USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}"}
    with run_process(
        [*command, "--workers", str(WORKERS)], port=port, env=env, log_path=log_path
    ) as supervisor:
        wait_for_startups(log_path, WORKERS, supervisor)
        yield supervisor


def test_workers_shut_down_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    port = free_port()
    with workers_serving(tmp_path, port) as supervisor:
        workers = worker_pids(supervisor.pid)
        assert len(workers) == WORKERS
        assert httpx.get(f"http://{HOST}:{port}/livez").status_code == 200

        supervisor.kill()  # SIGKILL: it can neither stop its workers nor clean up
        supervisor.wait()

        deadline = time.monotonic() + GONE_TIMEOUT
        while any(is_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)

    assert [pid for pid in workers if is_running(pid)] == []
    assert not accepts_connections(port)
    # Each worker got SIGTERM and shut down as when asked: its app closed its store.
    log = (tmp_path / "user-service.log").read_text(encoding="utf-8")
    assert log.count(SHUTDOWN) == WORKERS


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().name
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def accepted_by(port: int, client_ports: set[int]) -> dict[int, int]:
    """For each of our client ports, the inode of the server's socket that accepted it."""
    accepted = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rpartition(":")[2], 16)
        remote_port = int(fields[2].rpartition(":")[2], 16)
        if local_port == port and remote_port in client_ports:
            accepted[remote_port] = int(fields[9])
    return accepted


def test_connections_are_spread_over_the_workers(tmp_path: Path) -> None:
    port = free_port()
    with workers_serving(tmp_path, port) as supervisor, contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(socket.create_connection((HOST, port), timeout=5))
            for _ in range(CONNECTIONS)
        ]
        time.sleep(0.2)  # let the workers accept
        accepted = accepted_by(port, {client.getsockname()[1] for client in clients})
        owner = {inode: pid for pid in worker_pids(supervisor.pid) for inode in socket_inodes(pid)}
        per_worker = Counter(owner.get(inode) for inode in accepted.values())

    assert len(accepted) == CONNECTIONS
    assert None not in per_worker, "every connection is held by a worker"
    # The kernel hashes connections over the workers' sockets: fewer than a quarter
    # on either of two workers has a chance of about 1 in 30,000.
    assert len(per_worker) == WORKERS
    assert min(per_worker.values()) >= CONNECTIONS // 4, per_worker


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    port = free_port()
    with workers_serving(tmp_path, port) as supervisor:
        first, second = worker_pids(supervisor.pid)
        os.kill(first, signal.SIGKILL)

        deadline = time.monotonic() + GONE_TIMEOUT
        while time.monotonic() < deadline:
            workers = worker_pids(supervisor.pid)
            if len(workers) == WORKERS and first not in workers:
                break
            time.sleep(0.05)
        wait_for_startups(tmp_path / "user-service.log", WORKERS + 1, supervisor)

        assert second in workers
        assert first not in workers
        assert len(workers) == WORKERS
        assert httpx.get(f"http://{HOST}:{port}/livez").status_code == 200
    log = (tmp_path / "user-service.log").read_text(encoding="utf-8")
    assert f"worker {first} died of signal {signal.SIGKILL.value}" in log


def run_to_exit(command: list[str], env: dict[str, str], log_path: Path) -> int:
    with log_path.open("wb") as log:
        return subprocess.run(
            command,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=60,
        ).returncode


def test_a_port_already_taken_is_refused(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "second.log"
    env = {"USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}"}
    command = [venv_command("user-service"), "serve", "--host", HOST, "--port", str(port)]
    # Taken by another set of workers, whose SO_REUSEPORT sockets would let a second set join.
    with workers_serving(tmp_path, port):
        exit_code = run_to_exit([*command, "--workers", str(WORKERS)], env, log_path)

    assert exit_code == STARTUP_FAILURE
    assert f"cannot bind {HOST}:{port}" in log_path.read_text(encoding="utf-8")


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database's folder should be")
    log_path = tmp_path / "user-service.log"
    env = {"USER_SERVICE_DATABASE_URL": f"sqlite:///{blocker / 'accounts.db'}"}
    command = [venv_command("user-service"), "serve", "--host", HOST, "--port", str(free_port())]

    exit_code = run_to_exit([*command, "--workers", str(WORKERS)], env, log_path)

    assert exit_code == STARTUP_FAILURE
    assert f"exited with {STARTUP_FAILURE}; stopping" in log_path.read_text(encoding="utf-8")
