"""Several worker processes serving one port, each accepting its own share of connections.

uvicorn's own workers share one listening socket, and whichever is awake first
accepts: under a burst of new long-lived connections one worker got 20 to 25
of 32 and its core saturated while the other idled. Here each worker listens
on a socket of its own bound with ``SO_REUSEPORT``, and the kernel spreads new
connections evenly over them.

The supervisor replaces a worker killed by a signal, stops them all on
``SIGTERM`` or ``SIGINT``, and stops them all too if one exits by itself
(uvicorn's code 3: it could not start). Each worker asks the kernel for
``SIGTERM`` when the supervisor dies, so that killing the supervisor outright
(``SIGKILL``, the out-of-memory killer) does not leave them serving with
nobody to stop them.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess

_logger = logging.getLogger("servicekit.workers")
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STOP_TIMEOUT = 30.0
_POLL_SECONDS = 0.5


def balanced_workers_supported() -> bool:
    """Whether this system spreads connections over ``SO_REUSEPORT`` sockets (Linux does)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


@dataclass(frozen=True)
class WorkerConfig:
    """What each worker serves, and how.

    Attributes:
        factory: The import path of the app factory, ``"package.module:create_app"``.
        host: The address to bind.
        port: The port to bind.
        uvicorn_options: The other keyword arguments of :class:`uvicorn.Config`.
    """

    factory: str
    host: str
    port: int
    uvicorn_options: dict[str, Any]


def serve_workers(config: WorkerConfig, workers: int) -> None:
    """Run ``workers`` worker processes until ``SIGTERM`` or ``SIGINT``.

    Args:
        config: What each worker serves.
        workers: How many.

    Raises:
        SystemExit: With code 3 if the port is taken, or with a worker's exit code
            if one exits by itself (3: it could not start); a worker killed by a
            signal is replaced.
    """
    _check_port_is_free(config.host, config.port)
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    supervisor = os.getpid()

    def start() -> SpawnProcess:
        process = context.Process(target=_worker, args=(config, supervisor), name="worker")
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    failure = 0
    try:
        while not failure and not stop.wait(_POLL_SECONDS):
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                exit_code = process.exitcode or 0
                if exit_code >= 0:  # it gave up by itself: a restart would fail alike
                    _logger.error("worker %s exited with %s; stopping", process.pid, exit_code)
                    failure = exit_code or 1
                    break
                _logger.warning(
                    "worker %s died of signal %s; starting another", process.pid, -exit_code
                )
                processes[index] = start()
    finally:
        _stop(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise SystemExit(failure)


def _stop(processes: list[SpawnProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(_STOP_TIMEOUT)
        if process.is_alive():
            _logger.warning(
                "worker %s did not stop in %s s; killing it", process.pid, _STOP_TIMEOUT
            )
            process.kill()
            process.join()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _check_port_is_free(host: str, port: int) -> None:
    """Fail as uvicorn does if the port is taken, even by workers of another supervisor.

    (A second set of ``SO_REUSEPORT`` sockets would otherwise join the first.)
    """
    with socket.socket(_family(host)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            _logger.error("cannot bind %s:%s: %s", host, port, error)  # noqa: TRY400 (no traceback)
            raise SystemExit(STARTUP_FAILURE) from None


def _worker(config: WorkerConfig, supervisor: int) -> None:
    """Serve in a worker process, on a listening socket of its own."""
    _terminate_with_parent(supervisor)
    listener = socket.socket(_family(config.host))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listener.bind((config.host, config.port))
    except OSError as error:
        _logger.error("cannot bind %s:%s: %s", config.host, config.port, error)  # noqa: TRY400
        sys.exit(STARTUP_FAILURE)
    uvicorn_config = uvicorn.Config(
        config.factory, factory=True, host=config.host, port=config.port, **config.uvicorn_options
    )
    uvicorn.Server(uvicorn_config).run(sockets=[listener])


def _terminate_with_parent(supervisor: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != supervisor:  # it died before the request
        os.kill(os.getpid(), signal.SIGTERM)
