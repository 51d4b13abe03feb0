"""The ``auth-service`` command: run the HTTP service or manage its users."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

import uvicorn
from pydantic import ValidationError

from auth_service.credentials import CredentialStore, UserExistsError, check_username
from auth_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic_core import ErrorDetails

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_USER_EXISTS = 3

_EXIT_STATUS_HELP = f"""\
exit status:
  {EXIT_OK}  success
  {EXIT_BAD_INPUT}  bad input, such as an empty password or an invalid AUTH_SERVICE_* setting
  {EXIT_USAGE}  usage error
  {EXIT_USER_EXISTS}  the user already exists
"""

_ADD_HELP = """\
The password is read from standard input, never from the command line: on a
terminal it is asked for twice; otherwise the first line is the password
(without its trailing newline), e.g.
  printf '%s\\n' "$PASSWORD" | auth-service users add alice
"""


class _BadInputError(Exception):
    """Input that the command refuses; the message says why and never holds a password."""


def main(argv: list[str] | None = None) -> int:
    """Run the ``auth-service`` command.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` if omitted.

    Returns:
        The exit status: ``EXIT_OK``, ``EXIT_BAD_INPUT`` or ``EXIT_USER_EXISTS``.
        A usage error exits with ``EXIT_USAGE`` through ``SystemExit``.
    """
    arguments = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = arguments.command
    try:
        return command(arguments)
    except _BadInputError as error:
        _complain(str(error))
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auth-service",
        description="Validate usernames and passwords over HTTP, and manage the users.",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=int, default=8001, help="port to listen on (%(default)s)")
    serve.set_defaults(command=_serve)

    users = commands.add_parser(
        "users",
        help="manage the users",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    user_commands = users.add_subparsers(title="commands", required=True, metavar="COMMAND")

    add = user_commands.add_parser(
        "add",
        help="add a user, reading the password from standard input",
        description=_ADD_HELP,
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("name", metavar="NAME", help="the new username")
    add.set_defaults(command=_add_user)

    listing = user_commands.add_parser(
        "list",
        help="print the usernames, one a line",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.set_defaults(command=_list_users)
    return parser


def _serve(arguments: argparse.Namespace) -> int:
    _settings()
    uvicorn.run(
        "auth_service.app:create_app",
        factory=True,
        host=arguments.host,
        port=arguments.port,
        loop="uvloop",
        http="httptools",
    )
    return EXIT_OK


def _add_user(arguments: argparse.Namespace) -> int:
    name: str = arguments.name
    settings = _settings()
    try:
        check_username(name)
    except ValueError as error:
        raise _BadInputError(str(error)) from None
    password = _read_password()
    with CredentialStore.from_settings(settings) as store:
        try:
            store.add(name, password)
        except UserExistsError as error:
            _complain(str(error))
            return EXIT_USER_EXISTS
        except ValueError as error:
            raise _BadInputError(str(error)) from None
    _complain(f"added user {name!r}")
    return EXIT_OK


def _list_users(_arguments: argparse.Namespace) -> int:
    with CredentialStore.from_settings(_settings()) as store:
        usernames = store.usernames()
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
    try:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Repeat password: ") != password:
                msg = "the passwords do not match"
                raise _BadInputError(msg)
            return password
        return sys.stdin.readline().removesuffix("\n")
    except EOFError:
        msg = "no password was given"
        raise _BadInputError(msg) from None
    except UnicodeDecodeError:
        msg = "the password is not valid text in the locale's encoding"
        raise _BadInputError(msg) from None


def _complain(message: str) -> None:
    sys.stderr.write(f"auth-service: {message}\n")


if __name__ == "__main__":
    raise SystemExit(main())
