"""The ``clients`` commands every called service has: ``add NAME``, ``list``, ``remove NAME``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from servicekit.client_tokens import (
    MAX_TOKENS_PER_CLIENT,
    InvalidClientNameError,
    TooManyTokensError,
    UnknownClientError,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from servicekit.client_tokens import ClientRegistry

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_TOO_MANY_TOKENS = 3
EXIT_UNKNOWN_CLIENT = 4
EXIT_UNAVAILABLE = 5

EXIT_STATUS_HELP = f"""\
exit status:
  {EXIT_OK}  success
  {EXIT_BAD_INPUT}  bad input: an invalid client name, or an invalid setting
  2  usage error
  {EXIT_TOO_MANY_TOKENS}  the client already holds {MAX_TOKENS_PER_CLIENT} tokens
  {EXIT_UNKNOWN_CLIENT}  no client has that name
  {EXIT_UNAVAILABLE}  the database cannot be opened or used
"""

_ADD_HELP = """\
Make a new token for the client NAME, registering the client if it is new,
and print it alone on standard output; it is shown only this once, and the
service keeps only its SHA-256 digest. A client holds at most two tokens:
to rotate one, add a second, give it to the client, then remove the older
one with `clients remove NAME --oldest`.
"""


def add_clients_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    caller: str,
) -> argparse.ArgumentParser:
    """Add ``clients add NAME``, ``clients list`` and ``clients remove NAME [--oldest]``.

    Each subcommand sets ``clients_action`` (``"add"``, ``"list"``,
    ``"remove"``) for :func:`run_clients_command`.

    Args:
        commands: The command line's subcommands.
        caller: Who the clients usually are, for the help (e.g. ``"user-service"``).

    Returns:
        The ``clients`` parser.
    """
    clients = commands.add_parser(
        "clients",
        help=f"manage the clients allowed to call this service (such as {caller})",
    )
    actions = clients.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add = actions.add_parser(
        "add", help="make a token for a client and print it", description=_ADD_HELP
    )
    add.add_argument("name", metavar="NAME", help=f"the client's name, such as {caller}")
    add.set_defaults(clients_action="add")
    listing = actions.add_parser(
        "list", help="print each token held: the client's name and when it was made"
    )
    listing.set_defaults(clients_action="list")
    remove = actions.add_parser("remove", help="revoke a client's tokens")
    remove.add_argument("name", metavar="NAME", help="the client's name")
    remove.add_argument(
        "--oldest", action="store_true", help="revoke only its older token (after a rotation)"
    )
    remove.set_defaults(clients_action="remove")
    for parser in (clients, add, listing, remove):
        parser.epilog = EXIT_STATUS_HELP
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return clients


def run_clients_command(
    arguments: argparse.Namespace,
    *,
    registry: Callable[[], AbstractAsyncContextManager[ClientRegistry]],
    unavailable: type[Exception],
    complain: Callable[[str], None],
) -> int:
    """Carry out the ``clients`` subcommand that ``arguments`` name.

    Args:
        arguments: The parsed command line.
        registry: Opens the service's database and gives its registry, until the block ends.
        unavailable: The error the database raises when it cannot be used.
        complain: Writes a message to standard error, with the program's name.

    Returns:
        The exit status (see :data:`EXIT_STATUS_HELP`).
    """
    try:
        return asyncio.run(_run(arguments, registry, complain))
    except InvalidClientNameError as error:
        complain(str(error))
        return EXIT_BAD_INPUT
    except TooManyTokensError as error:
        complain(str(error))
        return EXIT_TOO_MANY_TOKENS
    except UnknownClientError as error:
        complain(str(error))
        return EXIT_UNKNOWN_CLIENT
    except unavailable as error:
        complain(f"the database cannot be used: {error}")
        return EXIT_UNAVAILABLE


async def _run(
    arguments: argparse.Namespace,
    registry: Callable[[], AbstractAsyncContextManager[ClientRegistry]],
    complain: Callable[[str], None],
) -> int:
    async with registry() as clients:
        match arguments.clients_action:
            case "add":
                token = await clients.issue(arguments.name)
                sys.stdout.write(f"{token}\n")
                complain(f"made a token for client {arguments.name!r}; it is not shown again")
            case "list":
                sys.stdout.writelines(
                    f"{held.client}\t{datetime.fromtimestamp(held.created, UTC).isoformat()}\n"
                    for held in await clients.tokens()
                )
            case "remove":
                removed = await clients.revoke(arguments.name, oldest_only=arguments.oldest)
                complain(f"revoked {removed} token(s) of client {arguments.name!r}")
    return EXIT_OK
