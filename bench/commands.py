"""How to start each process the benchmarks measure, on a free port.

The three services as shipped (their console scripts, default settings but for
their neighbours' URLs, their client tokens and their SQLite files), and the
two baselines kept in ``bench/``: the stand-in auth-service and the seed's
design. Each command's environment is clean
(:func:`~tests.support.processes.clean_environment`), so settings a developer
has exported do not change what is measured. Every caller presents the token
that the service it calls issued to it (see :mod:`bench.clients`); the hops
stay plain HTTP on the loopback interface.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.processes import HOST, clean_environment, free_port, venv_command

from bench.services import Command

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
FORM_LOAD_RATE_LIMIT = "1000000/second"
"""frontend-web's limit on sign-ups per address under the form load, which posts from one.

Far above any rate the load reaches, so that it never refuses; over a window
of one second, so that the attempts it keeps count of stay few.
"""


def bench_environment() -> dict[str, str]:
    """Return a clean environment with the repository on ``PYTHONPATH``, for ``bench`` modules."""
    return clean_environment({"PYTHONPATH": str(REPO_ROOT)})


def user_environment(database: Path) -> dict[str, str]:
    """Return the environment of user-service over ``database``, every other setting its default."""
    return clean_environment({"USER_SERVICE_DATABASE_URL": f"sqlite:///{database.absolute()}"})


def user_service_command(
    auth_url: str, database: Path, log_path: Path, *, auth_token: Path
) -> Command:
    """Return how to start ``user-service serve`` exactly as shipped, on a free port.

    Its workers (as many as it starts by default), logs, metrics and request
    ids: all as by default; the logs go to ``log_path``.

    Args:
        auth_url: auth-service's base URL.
        database: The SQLite file.
        log_path: Where its output goes; its stem names it.
        auth_token: The file holding its token for auth-service.

    Returns:
        The command.
    """
    environment = {
        **user_environment(database),
        "USER_SERVICE_AUTH_URL": auth_url,
        "USER_SERVICE_AUTH_TOKEN_FILE": str(auth_token.absolute()),
    }
    return _serve(
        "user-service", log_path.stem, log_path, environment, "--log-level", "INFO", workers=None
    )


def auth_environment(database: Path) -> dict[str, str]:
    """Return the environment of auth-service over ``database``, every other setting its default."""
    return clean_environment({"AUTH_SERVICE_DATABASE_URL": f"sqlite:///{database.absolute()}"})


def auth_service_command(database: Path, log_path: Path) -> Command:
    """Return how to start ``auth-service serve`` as shipped, over ``database``, on a free port.

    Args:
        database: Its SQLite file.
        log_path: Where its output goes.

    Returns:
        The command.
    """
    return _serve("auth-service", "auth-service", log_path, auth_environment(database))


def frontend_web_command(
    user_service_url: str, log_path: Path, *, user_service_token: Path
) -> Command:
    """Return how to start ``frontend-web serve`` as shipped, in front of user-service.

    Its limit on sign-ups per address is :data:`FORM_LOAD_RATE_LIMIT`: the form
    load posts every sign-up from one address.

    Args:
        user_service_url: user-service's base URL.
        log_path: Where its output goes.
        user_service_token: The file holding its token for user-service.

    Returns:
        The command.
    """
    environment = clean_environment(
        {
            "FRONTEND_WEB_USER_SERVICE_URL": user_service_url,
            "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE": str(user_service_token.absolute()),
            "FRONTEND_WEB_RATE_LIMIT": FORM_LOAD_RATE_LIMIT,
        }
    )
    return _serve("frontend-web", "frontend-web", log_path, environment)


def stand_in_command(latency_ms: int, folder: Path, *, tokens: Sequence[Path]) -> Command:
    """Return how to start a stand-in auth-service answering after ``latency_ms``, on a free port.

    Args:
        latency_ms: Its latency.
        folder: Where its log goes.
        tokens: The files of the tokens it answers (see :func:`bench.clients.stand_in_token`);
            none: it answers any caller, as services did before client tokens.

    Returns:
        The command.
    """
    port = free_port()
    token_options = [option for token in tokens for option in ("--token-file", str(token))]
    return Command(
        f"stand-in auth-service ({latency_ms} ms)",
        [
            sys.executable,
            "-m",
            "bench.stand_in_auth",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
            *token_options,
        ],
        port,
        folder / f"stand-in-auth-{latency_ms}ms.log",
        env=bench_environment(),
    )


def seed_command(arguments: list[str], log_path: Path) -> Command:
    """Return how to start the seed's design (``bench/seed_design.py``) on a free port.

    Args:
        arguments: Its verifier: ``["--auth-url", URL, "--auth-token-file", FILE]`` or
            ``["--no-hop"]``.
        log_path: Where its output goes; its stem names it.

    Returns:
        The command.
    """
    port = free_port()
    return Command(
        log_path.stem,
        [sys.executable, "-m", "bench.seed_design", "--port", str(port), *arguments],
        port,
        log_path,
        env=bench_environment(),
    )


def program_command(program: str) -> list[str]:
    """Return how to run a service's command line: its console script, else its module."""
    script = venv_command(program)
    if Path(script).exists():
        return [script]
    return [sys.executable, "-m", program.replace("-", "_")]


def _serve(
    program: str,
    name: str,
    log_path: Path,
    environment: dict[str, str],
    *options: str,
    workers: int | None = 1,
) -> Command:
    """Return how to start ``program serve`` (its console script) on a free port."""
    port = free_port()
    return Command(
        name,
        [*program_command(program), "serve", "--host", HOST, "--port", str(port), *options],
        port,
        log_path,
        env=environment,
        workers=workers,
    )
