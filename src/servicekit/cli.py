"""The ``serve`` command every service has."""

from __future__ import annotations

import argparse

import uvicorn

from servicekit.logs import logging_config


def add_serve_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], *, default_port: int
) -> argparse.ArgumentParser:
    """Add ``serve [--host H] [--port P] [--workers N] [--log-level L]`` to a command line.

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
        "--workers", type=int, default=1, help="worker processes (default: %(default)s)"
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="lowest level logged (default: %(default)s)",
    )
    return serve


def serve(factory: str, arguments: argparse.Namespace) -> None:
    """Serve the app that ``factory`` builds, with uvicorn on uvloop and httptools.

    Args:
        factory: The import path of the app factory, ``"package.module:create_app"``.
        arguments: The parsed ``serve`` arguments.
    """
    uvicorn.run(
        factory,
        factory=True,
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        loop="uvloop",
        http="httptools",
        log_config=logging_config(arguments.log_level),
        access_log=False,
        server_header=False,
    )


def serve_command_line(
    argv: list[str] | None, *, prog: str, description: str | None, factory: str, default_port: int
) -> int:
    """Run the command line of a service whose only command is ``serve``.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.
        prog: The program's name.
        description: What ``--help`` says of it.
        factory: The import path of the app factory.
        default_port: The service's usual port.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands, default_port=default_port)
    serve(factory, parser.parse_args(argv))
    return 0
