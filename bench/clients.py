"""The benchmarks' callers, each a registered client of the service it calls.

auth-service and user-service answer registered clients only. Before a
scenario starts its services, it registers every caller with the service it
calls through that service's own command line (``clients add NAME``), over
the database the service is to serve (:func:`add_client`), and keeps the
token printed in a file readable by its owner only, in the scenario's scratch
folder. The services read theirs from their ``*_TOKEN_FILE`` setting, the
load generators from ``--token-file`` (wrk's scripts from
``BENCH_WRK_TOKEN_FILE``).

A stand-in auth-service has no database: its token is made here, as the
services make them (:func:`stand_in_token`), and given to it and to its
callers alike.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from bench.commands import program_command
from servicekit.client_tokens import new_token

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

LOAD = "bench-load"
"""The client that the load generators call user-service and auth-service as."""
SEED_DESIGN = "seed-design"
"""The client that the seed's design calls auth-service as."""
USER_SERVICE = "user-service"
FRONTEND_WEB = "frontend-web"
ADD_TIMEOUT_SECONDS = 60.0


def add_client(
    program: str,
    client: str,
    environment: Mapping[str, str],
    token_file: Path,
    *,
    command: Sequence[str] | None = None,
) -> Path:
    """Register ``client`` with the service ``program`` through ``program clients add CLIENT``.

    Args:
        program: The service called (``auth-service``, ``user-service``).
        client: The caller's name.
        environment: The command's whole environment, which names the service's database.
        token_file: Where to keep the token; replaced if it exists.
        command: How to run the service's command line, if not as shipped
            (see :func:`bench.commands.program_command`).

    Returns:
        ``token_file``.

    Raises:
        RuntimeError: If the command failed.
    """
    added = subprocess.run(
        [*(command or program_command(program)), "clients", "add", client],
        env=dict(environment),
        capture_output=True,
        text=True,
        check=False,
        timeout=ADD_TIMEOUT_SECONDS,
    )
    if added.returncode != 0:
        msg = f"{program} clients add {client} exited with {added.returncode}: {added.stderr}"
        raise RuntimeError(msg)
    return keep_token(added.stdout.strip(), token_file)


def stand_in_token(token_file: Path) -> Path:
    """Make a token for a stand-in's callers, as the services make theirs; return its file."""
    return keep_token(new_token(), token_file)


def keep_token(token: str, token_file: Path) -> Path:
    """Write ``token`` to ``token_file``, readable by its owner only; return the file."""
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.unlink(missing_ok=True)
    token_file.touch(mode=0o600)
    token_file.write_text(f"{token}\n", encoding="ascii")
    return token_file


def read_token(token_file: Path) -> str:
    """Return the token in ``token_file``: its content without surrounding white space."""
    return token_file.read_text(encoding="ascii").strip()


def authorization(token_file: Path | None) -> dict[str, str]:
    """Return the header that presents the token in ``token_file``; none without a file."""
    return {} if token_file is None else {"Authorization": f"Bearer {read_token(token_file)}"}
