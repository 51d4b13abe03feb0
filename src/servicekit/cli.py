"""The ``serve`` command every service has."""

from __future__ import annotations

import argparse
import logging.config
import os
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import uvicorn

from servicekit.logs import logging_config
from servicekit.workers import WorkerConfig, balanced_workers_supported, serve_workers

if TYPE_CHECKING:
    from collections.abc import Iterator

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus-client's multiprocess mode keeps the metrics of every worker."""

_DEPRECATED_MULTIPROCESS_DIRECTORY = "prometheus_multiproc_dir"


def worker_count(text: str) -> int:
    """Parse ``--workers``: a positive integer.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not one.
    """
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        msg = f"must be a positive integer, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return count


def usable_cores() -> int:
    """Return how many CPU cores this process may run on (at least 1)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def add_serve_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    default_port: int,
    default_workers: int = 1,
) -> argparse.ArgumentParser:
    """Add ``serve [--host H] [--port P] [--workers N] [--log-level L]`` to a command line.

    Args:
        commands: The command line's subcommands.
        default_port: The service's usual port.
        default_workers: The service's usual number of worker processes.

    Returns:
        The ``serve`` parser.

    Raises:
        ValueError: If ``default_workers`` is not positive.
    """
    if default_workers < 1:
        msg = f"default_workers must be positive, not {default_workers}"
        raise ValueError(msg)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=default_port, help="port to bind (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=default_workers,
        metavar="N",
        help="worker processes, at least 1 (default: %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="lowest level logged (default: %(default)s)",
    )
    return serve


@contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """Let ``workers`` worker processes started inside share their metrics.

    With more than one, ``PROMETHEUS_MULTIPROC_DIR`` names a new temporary
    directory, removed at the end, unless the operator has already set it (their
    directory is used and kept). The workers inherit the variable, so
    prometheus-client writes their values there and every one of them can
    render the sum (see :class:`servicekit.metrics.Metrics`). With one, nothing
    changes: the metrics stay in the process's memory.

    Args:
        workers: The number of worker processes.

    Yields:
        Nothing; the variable is set until the block ends.
    """
    chosen = {MULTIPROCESS_DIRECTORY, _DEPRECATED_MULTIPROCESS_DIRECTORY} & os.environ.keys()
    if workers <= 1 or chosen:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="servicekit-metrics-") as directory:
        os.environ[MULTIPROCESS_DIRECTORY] = directory
        try:
            yield
        finally:
            os.environ.pop(MULTIPROCESS_DIRECTORY, None)


def serve(factory: str, arguments: argparse.Namespace) -> None:
    """Serve the app that ``factory`` builds, with uvicorn on uvloop and httptools.

    Several workers each accept their share of connections (see
    :mod:`servicekit.workers`) and share their metrics (see :func:`shared_metrics`).

    Args:
        factory: The import path of the app factory, ``"package.module:create_app"``.
        arguments: The parsed ``serve`` arguments.
    """
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "log_config": logging_config(arguments.log_level),
        "access_log": False,
        "server_header": False,
    }
    with shared_metrics(arguments.workers):
        if arguments.workers > 1 and balanced_workers_supported():
            logging.config.dictConfig(options["log_config"])
            config = WorkerConfig(factory, arguments.host, arguments.port, options)
            serve_workers(config, arguments.workers)
        else:
            uvicorn.run(
                factory,
                factory=True,
                host=arguments.host,
                port=arguments.port,
                workers=arguments.workers,
                **options,
            )


def serve_command_line(  # noqa: PLR0913 - keyword-only, the service's defaults
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    factory: str,
    default_port: int,
    default_workers: int = 1,
) -> int:
    """Run the command line of a service whose only command is ``serve``.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.
        prog: The program's name.
        description: What ``--help`` says of it.
        factory: The import path of the app factory.
        default_port: The service's usual port.
        default_workers: The service's usual number of worker processes.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands, default_port=default_port, default_workers=default_workers)
    serve(factory, parser.parse_args(argv))
    return 0
