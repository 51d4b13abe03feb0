"""Command line of frontend-web: ``frontend-web serve [--host H] [--port P] [--workers N]``."""

from __future__ import annotations

from servicekit.cli import serve_command_line

DEFAULT_PORT = 8080


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    return serve_command_line(
        argv,
        prog="frontend-web",
        description=__doc__,
        factory="frontend_web.factory:create_app",
        default_port=DEFAULT_PORT,
        env_prefix="FRONTEND_WEB_",
    )


if __name__ == "__main__":
    raise SystemExit(main())
