"""The ``auth-service`` command: run the HTTP service, or manage its users."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from pydantic import ValidationError

from auth_service.admin import UserAdmin
from auth_service.passwords import InvalidPasswordError, normalise_password
from auth_service.settings import Settings
from auth_service.store import (
    StoreUnavailableError,
    UnknownUserError,
    UserExistsError,
    store_from_settings,
)
from servicekit.cli import add_serve_command, serve
from servicekit.client_commands import add_clients_command, run_clients_command
from usernames import InvalidUsernameError, canonical_username

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pydantic_core import ErrorDetails

    from servicekit.client_tokens import ClientRegistry

DEFAULT_PORT = 8001

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_USER_EXISTS = 3
EXIT_UNKNOWN_USER = 4
EXIT_UNAVAILABLE = 5

_EXIT_STATUS_HELP = f"""\
exit status:
  {EXIT_OK}  success
  {EXIT_BAD_INPUT}  bad input: an invalid username or password, or an invalid AUTH_SERVICE_* setting
  {EXIT_USAGE}  usage error
  {EXIT_USER_EXISTS}  the user already exists
  {EXIT_UNKNOWN_USER}  no user has that name
  {EXIT_UNAVAILABLE}  the database cannot be opened or used
"""

_READING_INPUT_HELP = """\
The password is read from standard input, never from the command line: on a
terminal it is asked for twice; otherwise the first line is the password
(without its trailing newline), e.g.
  printf '%s\\n' "$PASSWORD" | auth-service users {command} alice
A password has 1 to 1,024 characters; it is normalised (RFC 8265
OpaqueString) and refused if it holds control or other disallowed characters.
"""

_DESCRIPTION = """\
Validate usernames and passwords over HTTP, and manage the users and the
clients allowed to ask (`clients add user-service`).

Configured by AUTH_SERVICE_* environment variables, among them
AUTH_SERVICE_DATABASE_URL (default sqlite:///var/auth-service.db; or
postgresql://user:password@host/database).
"""


class _BadInputError(Exception):
    """Input that the command refuses; the message says why and never holds a password."""


def main(argv: list[str] | None = None) -> int:
    """Run the ``auth-service`` command.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` if omitted.

    Returns:
        The exit status (see ``auth-service --help``). A usage error exits
        with ``EXIT_USAGE`` through ``SystemExit``.
    """
    arguments = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = arguments.command
    try:
        return command(arguments)
    except InvalidUsernameError as error:
        _complain(f"the username {error}")
        return EXIT_BAD_INPUT
    except (_BadInputError, InvalidPasswordError) as error:
        _complain(str(error))
        return EXIT_BAD_INPUT
    except UserExistsError as error:
        _complain(str(error))
        return EXIT_USER_EXISTS
    except UnknownUserError as error:
        _complain(str(error))
        return EXIT_UNKNOWN_USER
    except StoreUnavailableError as error:
        _complain(f"the database cannot be used: {error}")
        return EXIT_UNAVAILABLE


def _parser() -> argparse.ArgumentParser:
    def with_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.epilog = _EXIT_STATUS_HELP
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    parser = with_help(argparse.ArgumentParser(prog="auth-service", description=_DESCRIPTION))
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    with_help(add_serve_command(commands, default_port=DEFAULT_PORT)).set_defaults(command=_serve)

    users = with_help(commands.add_parser("users", help="manage the users"))
    user_commands = users.add_subparsers(title="commands", required=True, metavar="COMMAND")

    add = user_commands.add_parser(
        "add",
        help="add a user, reading the password from standard input",
        description=_READING_INPUT_HELP.format(command="add"),
    )
    add.add_argument("name", metavar="NAME", help="the new username")
    with_help(add).set_defaults(command=_add_user)

    set_password = user_commands.add_parser(
        "set-password",
        help="give a user a new password (read from standard input) and unlock the account",
        description=_READING_INPUT_HELP.format(command="set-password"),
    )
    set_password.add_argument("name", metavar="NAME", help="the username")
    with_help(set_password).set_defaults(command=_set_password)

    remove = user_commands.add_parser("remove", help="remove a user")
    remove.add_argument("name", metavar="NAME", help="the username")
    with_help(remove).set_defaults(command=_remove_user)

    listing = user_commands.add_parser("list", help="print the usernames, one a line")
    with_help(listing).set_defaults(command=_list_users)

    add_clients_command(commands, caller="user-service").set_defaults(command=_clients)
    return parser


def _serve(arguments: argparse.Namespace) -> int:
    settings = _settings()
    # Open the database once before serving: a clear message and status if it
    # cannot be, and the schema migrated once rather than by every worker.
    asyncio.run(_open_and_close(settings))
    serve("auth_service.factory:create_app", arguments, env_prefix="AUTH_SERVICE_")
    return EXIT_OK


async def _open_and_close(settings: Settings) -> None:
    async with store_from_settings(settings):
        pass


def _clients(arguments: argparse.Namespace) -> int:
    settings = _settings()

    @asynccontextmanager
    async def registry() -> AsyncIterator[ClientRegistry]:
        async with store_from_settings(settings) as store:
            yield store.clients

    return run_clients_command(
        arguments, registry=registry, unavailable=StoreUnavailableError, complain=_complain
    )


def _add_user(arguments: argparse.Namespace) -> int:
    name = canonical_username(arguments.name)
    with UserAdmin(_settings()) as admin:
        if admin.contains(name):
            raise UserExistsError(name)
        admin.add(name, _read_password())
    _complain(f"added user {name!r}")
    return EXIT_OK


def _set_password(arguments: argparse.Namespace) -> int:
    name = canonical_username(arguments.name)
    with UserAdmin(_settings()) as admin:
        if not admin.contains(name):
            raise UnknownUserError(name)
        admin.set_password(name, _read_password())
    _complain(f"set the password of user {name!r}")
    return EXIT_OK


def _remove_user(arguments: argparse.Namespace) -> int:
    name = canonical_username(arguments.name)
    with UserAdmin(_settings()) as admin:
        admin.remove(name)
    _complain(f"removed user {name!r}")
    return EXIT_OK


def _list_users(_arguments: argparse.Namespace) -> int:
    with UserAdmin(_settings()) as admin:
        usernames = admin.usernames()
    sys.stdout.writelines(f"{username}\n" for username in usernames)
    return EXIT_OK


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            _describe_setting_problem(problem)
            for problem in error.errors(include_input=False, include_url=False)
        )
        msg = f"invalid settings: {problems}"
        raise _BadInputError(msg) from None


def _describe_setting_problem(problem: ErrorDetails) -> str:
    if problem["type"] == "value_error" and "ctx" in problem:
        return str(problem["ctx"]["error"])
    variable = "AUTH_SERVICE_" + "_".join(map(str, problem["loc"])).upper()
    return f"{variable}: {problem['msg']}"


def _read_password() -> str:
    """Read a password and check it, so that a refusal comes before any hashing."""
    try:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Repeat password: ") != password:
                msg = "the passwords do not match"
                raise _BadInputError(msg)
        else:
            password = sys.stdin.readline().removesuffix("\n")
    except EOFError:
        msg = "no password was given"
        raise _BadInputError(msg) from None
    except UnicodeDecodeError:
        msg = "the password is not valid text in the locale's encoding"
        raise _BadInputError(msg) from None
    normalise_password(password)
    return password


def _complain(message: str) -> None:
    sys.stderr.write(f"auth-service: {message}\n")


if __name__ == "__main__":
    raise SystemExit(main())
