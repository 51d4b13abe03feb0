"""The ``serve`` command every service has."""

from __future__ import annotations

import argparse
import functools
import logging
import logging.config
import os
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import uvicorn
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE
from uvicorn.importer import import_from_string
from uvicorn.supervisors import Multiprocess

from servicekit.logs import logging_config
from servicekit.tls import TlsSettingsError, server_certificate
from servicekit.upstream import MissingClientTokenError

if TYPE_CHECKING:
    from collections.abc import Iterator

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus-client's multiprocess mode keeps the metrics of every worker."""

_DEPRECATED_MULTIPROCESS_DIRECTORY = "prometheus_multiproc_dir"

_logger = logging.getLogger("servicekit.cli")

DEFAULT_GRACEFUL_TIMEOUT = 20
"""Seconds a stopping worker lets its requests in flight run before cancelling them.

Longer than a request of these services takes with their default settings
(frontend-web waits at most 10 s for user-service), and shorter than the 30 s
Kubernetes waits after ``SIGTERM`` before it kills.
"""


def _positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a positive integer, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def worker_count(text: str) -> int:
    """Parse ``--workers``: a positive integer.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not one.
    """
    return _positive_integer(text)


def graceful_seconds(text: str) -> int:
    """Parse ``--graceful-timeout``: a positive whole number of seconds.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not one.
    """
    return _positive_integer(text)


def add_serve_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    default_port: int,
) -> argparse.ArgumentParser:
    """Add ``serve [--host H] [--port P] [--workers N] [--graceful-timeout S] [--log-level L]``.

    Every service runs one worker process unless ``--workers`` says otherwise.

    Args:
        commands: The command line's subcommands.
        default_port: The service's usual port.

    Returns:
        The ``serve`` parser.
    """
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=default_port, help="port to bind (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N",
        help="worker processes, at least 1 (default: %(default)s)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=graceful_seconds,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        metavar="SECONDS",
        help=(
            "on SIGTERM or SIGINT, how long requests in flight may run before they are"
            " cancelled (default: %(default)s)"
        ),
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


def settings_problems(error: ValidationError) -> str:
    """Describe what is wrong with settings, without their values (which may be secrets)."""
    return "; ".join(
        f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}"
        for problem in error.errors(include_input=False, include_url=False)
    )


def build_app(factory: str) -> Any:  # noqa: ANN401 - whatever app the factory builds
    """Import ``factory`` and call it; exit with uvicorn's start-up failure code if either fails.

    uvicorn gives that code (3) only to an app factory raising ``TypeError``;
    for anything else its worker exits with 1 and its supervisor starts another
    every half second, forever. With code 3 the supervisor stops instead. The
    settings a factory refuses are logged without their values, which may be
    secrets.

    Args:
        factory: The import path of the app factory, ``"package.module:create_app"``.

    Returns:
        The app.

    Raises:
        SystemExit: With code 3 if the factory cannot be imported or raises.
    """
    try:
        return import_from_string(factory)()
    except ValidationError as error:
        problems = settings_problems(error)
        _logger.error("the app factory %s refused its settings: %s", factory, problems)  # noqa: TRY400
    except MissingClientTokenError as error:
        _logger.error("the app factory %s cannot start: %s", factory, error)  # noqa: TRY400
    except Exception:
        _logger.exception("the app factory %s failed", factory)
    raise SystemExit(STARTUP_FAILURE)


def supervise(config: uvicorn.Config) -> None:
    """Run ``config.workers`` workers under uvicorn's supervisor until ``SIGTERM`` or ``SIGINT``.

    What ``uvicorn.run`` does with several workers, and one thing more: uvicorn
    stops its supervisor when a worker cannot start (the app factory raises,
    the lifespan's start-up fails) but then returns as if asked to stop; here
    that is an exit with uvicorn's start-up failure code.

    Args:
        config: What every worker serves, ``config.workers`` of them.

    Raises:
        SystemExit: With code 3 if the port is taken or a worker could not start.
    """
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)


def serve(factory: str, arguments: argparse.Namespace, *, env_prefix: str) -> None:
    """Serve the app that ``factory`` builds, with uvicorn on uvloop and httptools.

    Several workers are started and watched by uvicorn's supervisor (see
    :func:`supervise`) and share their metrics (see :func:`shared_metrics`).
    With ``<env_prefix>TLS_CERT_FILE`` and ``<env_prefix>TLS_KEY_FILE`` set, it
    serves HTTPS (see :func:`servicekit.tls.server_certificate`).

    Args:
        factory: The import path of the app factory, ``"package.module:create_app"``.
        arguments: The parsed ``serve`` arguments.
        env_prefix: The service's prefix of settings, e.g. ``"USER_SERVICE_"``.

    Raises:
        SystemExit: With code 3 if the TLS settings cannot be served with.
    """
    log_config = logging_config(arguments.log_level)
    try:
        certificate = server_certificate(env_prefix)
    except TlsSettingsError as error:
        logging.config.dictConfig(log_config)
        _logger.error("cannot serve HTTPS: %s", error)  # noqa: TRY400 - the message says it all
        raise SystemExit(STARTUP_FAILURE) from None
    app = functools.partial(build_app, factory)
    options: dict[str, Any] = {
        "factory": True,
        "host": arguments.host,
        "port": arguments.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": log_config,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,  # X-Forwarded-*: only the app's own trusted proxies'
        "timeout_graceful_shutdown": arguments.graceful_timeout,
        **(certificate.uvicorn_options() if certificate else {}),
    }
    with shared_metrics(arguments.workers):
        if arguments.workers == 1:
            uvicorn.run(app, **options)
        else:
            supervise(uvicorn.Config(app, workers=arguments.workers, **options))


def serve_command_line(  # noqa: PLR0913 - the service's names and defaults, by keyword
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    factory: str,
    default_port: int,
    env_prefix: str,
) -> int:
    """Run the command line of a service whose only command is ``serve``.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.
        prog: The program's name.
        description: What ``--help`` says of it.
        factory: The import path of the app factory.
        default_port: The service's usual port.
        env_prefix: The service's prefix of settings, e.g. ``"USER_SERVICE_"``.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands, default_port=default_port)
    serve(factory, parser.parse_args(argv), env_prefix=env_prefix)
    return 0
