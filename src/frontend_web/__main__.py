"""Command line of frontend-web: ``frontend-web serve [--host H] [--port P] [--workers N]``."""

from __future__ import annotations

import argparse

from servicekit.cli import add_serve_command, serve

DEFAULT_PORT = 8080


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="frontend-web", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_command(commands, default_port=DEFAULT_PORT)
    arguments = parser.parse_args(argv)
    serve("frontend_web.app:create_app", arguments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
