"""Command line of user-service: serve the HTTP API, or manage the clients allowed to call it.

``user-service serve [--host H] [--port P] [--workers N]`` runs one worker
process unless ``--workers`` says otherwise; ``user-service clients add
frontend-web`` makes the token frontend-web calls it with.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from pydantic import ValidationError

from servicekit.cli import add_serve_command, serve, settings_problems
from servicekit.client_commands import EXIT_BAD_INPUT, add_clients_command, run_clients_command
from user_service.accounts import AccountStoreUnavailableError
from user_service.settings import Settings
from user_service.store_factory import account_store_from_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from servicekit.client_tokens import ClientRegistry

DEFAULT_PORT = 8000
ENV_PREFIX = "USER_SERVICE_"


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="user-service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_command(commands, default_port=DEFAULT_PORT)
    add_clients_command(commands, caller="frontend-web")
    arguments = parser.parse_args(argv)
    if arguments.command == "serve":
        serve("user_service.factory:create_app", arguments, env_prefix=ENV_PREFIX)
        return 0
    try:
        settings = Settings()
    except ValidationError as error:
        _complain(f"invalid settings: {settings_problems(error)}")
        return EXIT_BAD_INPUT

    @asynccontextmanager
    async def registry() -> AsyncIterator[ClientRegistry]:
        store = account_store_from_settings(settings)
        await store.open()
        try:
            yield store.clients
        finally:
            await store.close()

    return run_clients_command(
        arguments, registry=registry, unavailable=AccountStoreUnavailableError, complain=_complain
    )


def _complain(message: str) -> None:
    sys.stderr.write(f"user-service: {message}\n")


if __name__ == "__main__":
    raise SystemExit(main())
