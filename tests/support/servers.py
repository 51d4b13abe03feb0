"""Real servers for tests: an ASGI app on a uvicorn thread, or a service in its own process.

The process helpers (free ports, waiting for start-up, stopping) live in
:mod:`tests.support.processes`, shared with the benchmarks; they are importable
from here too.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import uvicorn

from tests.support.log_scan import register_log
from tests.support.processes import (
    HOST,
    START_TIMEOUT_SECONDS,
    STARTED,
    free_port,
    start,
    stop,
    venv_command,
    wait_for_port,
    wait_for_startups,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from starlette.types import ASGIApp

    from tests.support.tls import TestTls

__all__ = [
    "HOST",
    "STARTED",
    "free_port",
    "run_process",
    "serve_in_thread",
    "venv_command",
    "wait_for_port",
    "wait_for_startups",
]


@contextmanager
def serve_in_thread(app: ASGIApp, *, tls: TestTls | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a background thread.

    The app's lifespan runs, so collaborators it opens there are real. Pact's
    provider state handlers need the provider in the same process, hence a
    thread rather than a subprocess.

    Args:
        app: The app.
        tls: The certificate to serve HTTPS with; plain HTTP when omitted.

    Yields:
        The base URL of the server, ``http://127.0.0.1:PORT`` or ``https://...``.
    """
    port = free_port()
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                msg = f"the app did not start on port {port}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        yield f"{'https' if tls else 'http'}://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def run_process(
    args: list[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    log_path: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a service process, wait until it listens on ``port``, stop it at exit.

    It runs in this session's environment (see ``tests/conftest.py``) plus ``env``.
    Its standard output and error go to ``log_path``, so tests can read the logs;
    the file is also scanned for test passwords at the end of the session.

    Yields:
        The running process.
    """
    register_log(log_path)
    process = start(args, log_path=log_path, env={**os.environ, **(env or {})})
    try:
        wait_for_port(port, process=process, log_path=log_path)
        yield process
    finally:
        stop(process)
