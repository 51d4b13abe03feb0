"""The ``frontend-web`` command line."""

import argparse

import uvicorn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frontend-web", description="Run frontend-web.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the application over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (%(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (%(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``frontend-web`` command.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The process exit status.
    """
    args = _parser().parse_args(argv)
    uvicorn.run(
        "frontend_web.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
