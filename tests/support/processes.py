"""Processes on free ports, for the tests and the benchmarks: start, wait until up, stop.

Only the standard library: the benchmarks (``python -m bench``, run from the
repository's root) import this module too, outside any test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

HOST = "127.0.0.1"
STARTED = "Application startup complete."
"""What uvicorn logs once an app (one worker's) has finished its start-up."""
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.02
LOG_TAIL_LINES = 40
_TRACKER = "multiprocessing.resource_tracker"
# Settings a developer may have exported for their own runs of the services.
_SERVICE_PREFIXES = ("USER_SERVICE_", "AUTH_SERVICE_", "FRONTEND_WEB_")


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def venv_command(name: str) -> str:
    """Return the path of a console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / name)


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without service settings, plus ``extra``.

    Every ``USER_SERVICE_*``, ``AUTH_SERVICE_*`` and ``FRONTEND_WEB_*`` variable is
    dropped, so a child process runs with its defaults and what ``extra`` sets;
    ``PACT_DO_NOT_TRACK`` is ``true`` unless set already.

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


def start(args: list[str], *, log_path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start a process whose standard output and error are appended to ``log_path``.

    Its standard input is empty; the terminal never sees its output.

    Args:
        args: The command line.
        log_path: The log file; created, with its folder, if missing.
        env: Its whole environment.

    Returns:
        The process.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


def log_size(log_path: Path) -> int:
    """Return the size of ``log_path`` in bytes, 0 if it does not exist: where new output starts."""
    try:
        return log_path.stat().st_size
    except FileNotFoundError:
        return 0


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of ``log_path`` (empty if it cannot be read)."""
    try:
        with log_path.open(encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines))
    except OSError:
        return ""


def wait_for_port(
    port: int,
    *,
    timeout: float = START_TIMEOUT_SECONDS,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    name: str = "the process",
) -> None:
    """Wait until something accepts connections on ``port``.

    uvicorn listens only once the app's start-up (opening its store) has finished,
    so a connection accepted means the service is ready.

    Args:
        port: The port on :data:`HOST`.
        timeout: Seconds to wait.
        process: The process that should listen: its exit ends the wait at once.
        log_path: Its log, whose end the error quotes.
        name: What the error calls it.

    Raises:
        RuntimeError: If ``process`` exits first, or nothing listens within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            msg = f"{name} exited with {process.returncode} before listening on {port}"
            raise RuntimeError(msg + _quoted(log_path))
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(POLL_SECONDS)
    msg = f"nothing listened on {HOST}:{port} within {timeout} s"
    raise RuntimeError(msg + _quoted(log_path))


def wait_for_startups(  # noqa: PLR0913 (the process, its log and what to wait for, by name)
    log_path: Path,
    count: int | None,
    process: subprocess.Popen[bytes],
    *,
    timeout: float = START_TIMEOUT_SECONDS,
    log_start: int = 0,
    name: str = "the process",
) -> None:
    """Wait until ``count`` workers of ``process`` have logged that their app started.

    Args:
        log_path: The process's log.
        count: How many workers it runs; ``None`` for as many as it has started
            (:func:`worker_count`), at least one.
        process: The process (a supervisor, or a server serving by itself).
        timeout: Seconds to wait.
        log_start: Where in the log this run of it began (see :func:`log_size`).
        name: What the error calls it.

    Raises:
        RuntimeError: If the process ends first, or its workers do not all start in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        expected = count if count is not None else max(1, worker_count(process.pid))
        with log_path.open("rb") as log:
            log.seek(log_start)
            if log.read().decode("utf-8", "replace").count(STARTED) >= expected:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            msg = f"{name}: {expected} worker(s) did not start within {timeout} s"
            raise RuntimeError(msg + _quoted(log_path))
        time.sleep(POLL_SECONDS)


def stop(*processes: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop processes gracefully (SIGTERM, all at once), killing any not stopped in ``timeout``."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
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


def worker_count(pid: int) -> int:
    """Return the worker processes that process ``pid`` has started (0 if it serves itself).

    Its descendants, but for multiprocessing's resource tracker, which serves none.
    """
    return sum(1 for child in process_tree(pid)[1:] if _TRACKER not in _command_line(child))


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _quoted(log_path: Path | None) -> str:
    if log_path is None:
        return ""
    return f"; its log ends with:\n{log_tail(log_path)}"
