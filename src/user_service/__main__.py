"""Command line of user-service: ``user-service serve [--host H] [--port P] [--workers N]``.

It runs one worker process unless ``--workers`` says otherwise.
"""

from __future__ import annotations

from servicekit.cli import serve_command_line

DEFAULT_PORT = 8000


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    return serve_command_line(
        argv,
        prog="user-service",
        description=__doc__,
        factory="user_service.factory:create_app",
        default_port=DEFAULT_PORT,
    )


if __name__ == "__main__":
    raise SystemExit(main())
