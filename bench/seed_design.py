"""The seed's design, kept as a baseline: a blocking HTTP call inside ``async def``.

This is the endpoint the pact-python example documents, which user-service
grew from: FastAPI, a synchronous HTTP session asking auth-service inside an
``async def`` handler (so every call blocks the event loop for its whole
latency), and accounts in a module-level dict. It shares nothing with
``user_service`` on purpose: it must stay the seed's design while user-service
changes.

The same endpoint also gives the *limit* of the benchmark: with ``--no-hop``
its verifier is in-process and always says yes, so nothing but FastAPI and
the dict is left.

Run it as ``python -m bench.seed_design --port P (--auth-url URL --auth-token-file FILE |
--no-hop)``. Calling auth-service, it presents the client token in ``FILE``,
which auth-service now requires (see :mod:`bench.clients`); the seed had none.
Its own endpoint asks its callers for none, as the seed's did.

The seed used ``requests.Session``; ``requests`` is not among the project's
dependencies, so where it is not installed an ``httpx.Client`` (a pooled
synchronous session too) is used the same way. :data:`SYNC_CLIENT` says which.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn
from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel
from tests.support.processes import HOST

from bench.clients import read_token

if TYPE_CHECKING:
    from collections.abc import Callable

SYNC_CLIENT = "requests" if importlib.util.find_spec("requests") is not None else "httpx"
"""The synchronous HTTP client the baseline uses: ``requests`` if installed, else ``httpx``."""

AUTH_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class UserAccount:
    """A stored account."""

    id: int
    username: str


class CreateAccountRequest(BaseModel):
    """Body of ``POST /accounts``."""

    username: str
    password: str


class CreateAccountResponse(BaseModel):
    """Body of a ``201`` answer."""

    id: int
    username: str
    status: str = "created"


ACCOUNTS: dict[int, UserAccount] = {}
_NEXT_ID = itertools.count(1)


class _SyncResponse(Protocol):
    status_code: int

    def json(self) -> Any:  # noqa: ANN401 (JSON of any shape)
        ...


class _SyncSession(Protocol):
    def post(
        self,
        url: str,
        *,
        json: Any,  # noqa: ANN401
        headers: dict[str, str],
        timeout: float,
    ) -> _SyncResponse: ...


def _sync_session() -> _SyncSession:
    module: Any = importlib.import_module(SYNC_CLIENT)
    session: _SyncSession = module.Session() if SYNC_CLIENT == "requests" else module.Client()
    return session


def blocking_verifier(auth_url: str, token: str) -> Callable[[str, str], bool]:
    """Return the seed's verifier: a synchronous ``POST /auth/validate`` on a pooled session.

    Args:
        auth_url: auth-service's base URL.
        token: The client token auth-service issued to this baseline.

    Returns:
        A function that blocks until auth-service answers, and returns its verdict.
    """
    session = _sync_session()
    url = auth_url.rstrip("/") + "/auth/validate"
    headers = {"Authorization": f"Bearer {token}"}

    def validate_credentials(username: str, password: str) -> bool:
        response = session.post(
            url,
            json={"username": username, "password": password},
            headers=headers,
            timeout=AUTH_TIMEOUT_SECONDS,
        )
        return response.status_code == status.HTTP_200_OK and response.json().get("valid") is True

    return validate_credentials


def always_yes(username: str, password: str) -> bool:
    """The limit's verifier: in-process, no hop, always valid."""
    del username, password
    return True


def create_app(validate_credentials: Callable[[str, str], bool]) -> FastAPI:
    """Build the seed's app.

    Args:
        validate_credentials: Says whether a username and password are valid; it is
            called directly inside the ``async def`` endpoint, as the seed did.

    Returns:
        The app.
    """
    app = FastAPI(title="seed design")

    @app.post("/accounts", status_code=status.HTTP_201_CREATED)
    async def create_account(payload: CreateAccountRequest) -> CreateAccountResponse:
        if not validate_credentials(payload.username, payload.password):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid credentials")
        account = UserAccount(id=next(_NEXT_ID), username=payload.username)
        ACCOUNTS[account.id] = account
        return CreateAccountResponse(id=account.id, username=account.username)

    return app


def main(argv: list[str] | None = None) -> int:
    """Serve the seed's app with uvicorn on uvloop and httptools, as user-service is served.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    verifier = parser.add_mutually_exclusive_group(required=True)
    verifier.add_argument("--auth-url", help="auth-service's base URL (the seed's design)")
    verifier.add_argument(
        "--no-hop", action="store_true", help="an in-process verifier that always says yes"
    )
    parser.add_argument(
        "--auth-token-file",
        type=Path,
        help="the file holding its client token for auth-service (with --auth-url)",
    )
    arguments = parser.parse_args(argv)
    validate: Callable[[str, str], bool]
    if arguments.no_hop:
        validate = always_yes
    elif arguments.auth_token_file is None:
        parser.error("--auth-url needs --auth-token-file: auth-service answers its clients only")
    else:
        validate = blocking_verifier(arguments.auth_url, read_token(arguments.auth_token_file))
    uvicorn.run(
        create_app(validate),
        host=HOST,
        port=arguments.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
