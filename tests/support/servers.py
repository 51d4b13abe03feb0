"""Real servers for tests: an ASGI app on a uvicorn thread, or a service in its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from tests.support.log_scan import register_log

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from starlette.types import ASGIApp

HOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int, *, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts connections on ``port``.

    Raises:
        RuntimeError: If ``process`` exits first, or nothing listens within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            msg = f"process exited with {process.returncode} before listening on {port}"
            raise RuntimeError(msg)
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    msg = f"nothing listened on {HOST}:{port} within {timeout} s"
    raise RuntimeError(msg)


STARTED = "Application startup complete."


def wait_for_startups(
    log_path: Path, count: int, process: subprocess.Popen[bytes], *, timeout: float = 20.0
) -> None:
    """Wait until ``count`` workers of ``process`` have logged that their app started.

    Raises:
        AssertionError: If the process ended, or they did not all start in time.
    """
    deadline = time.monotonic() + timeout
    while log_path.read_text(encoding="utf-8", errors="replace").count(STARTED) < count:
        if process.poll() is not None or time.monotonic() > deadline:
            log = log_path.read_text(encoding="utf-8", errors="replace")
            msg = f"{count} worker(s) did not start; the log says:\n{log}"
            raise AssertionError(msg)
        time.sleep(0.05)


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a background thread.

    The app's lifespan runs, so collaborators it opens there are real. Pact's
    provider state handlers need the provider in the same process, hence a
    thread rather than a subprocess.

    Yields:
        The base URL of the server, ``http://127.0.0.1:PORT``.
    """
    port = free_port()
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = f"the app did not start on port {port}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def venv_command(name: str) -> str:
    """Return the path of a console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / name)


@contextmanager
def run_process(
    args: list[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    log_path: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a service process, wait until it listens on ``port``, stop it at exit.

    Its standard output and error go to ``log_path``, so tests can read the logs;
    the file is also scanned for test passwords at the end of the session.

    Yields:
        The running process.
    """
    register_log(log_path)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, process=process)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
