"""Command line of user-service: ``user-service serve [--host H] [--port P] [--workers N]``.

It runs one worker process per usable CPU core unless ``--workers`` says otherwise.
"""

from __future__ import annotations

from servicekit.cli import serve_command_line, usable_cores

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
        # Its accounts are in a database that every worker shares, so one per core
        # puts the machine to use; one process is bound by its event loop's core.
        default_workers=usable_cores(),
    )


if __name__ == "__main__":
    raise SystemExit(main())
