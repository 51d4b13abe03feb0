"""Write each service's OpenAPI document to ``openapi/``, as ``make openapi`` does.

Each document is the one the service serves at ``/openapi.json``, from an app
built by the service's own ``create_app``, with settings that need no
database and no network: nothing is opened to build a document. The files
are committed and reviewed like the pacts; ``tests/contracts/
test_openapi_documents.py`` fails when a service serves another document.

``python scripts/write_openapi.py [FOLDER]`` writes into FOLDER (default ``openapi``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from auth_service.factory import create_app as create_auth_service
from auth_service.settings import Settings as AuthServiceSettings
from user_service.accounts import InMemoryAccountStore
from user_service.factory import create_app as create_user_service
from user_service.settings import Settings as UserServiceSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "openapi"
UNUSED_TOKEN = SecretStr("document-only-token-never-sent-to-any-service")
"""user-service's factory needs a token for auth-service to build its client; none is sent."""


def user_service(_: Path) -> FastAPI:
    """Build user-service with accounts in memory and a token it never sends."""
    settings = UserServiceSettings(auth_token=UNUSED_TOKEN, auth_token_file=None)
    return create_user_service(settings, account_store=InMemoryAccountStore())


def auth_service(scratch: Path) -> FastAPI:
    """Build auth-service on a SQLite file that ``create_app`` never opens."""
    settings = AuthServiceSettings(database_url=f"sqlite:///{scratch / 'auth-service.db'}")
    return create_auth_service(settings)


SERVICES: dict[str, Callable[[Path], FastAPI]] = {
    "user-service": user_service,
    "auth-service": auth_service,
}
"""Each service, by the name of its document, and how to build it."""


def render(document: dict[str, Any]) -> str:
    """Return a document as committed: FastAPI's key order, two-space indent, a final newline."""
    return json.dumps(document, indent=2) + "\n"


def documents() -> dict[str, str]:
    """Return each service's document, rendered, by service name."""
    with tempfile.TemporaryDirectory(prefix="openapi-") as scratch:
        return {name: render(build(Path(scratch)).openapi()) for name, build in SERVICES.items()}


def write(folder: Path) -> list[Path]:
    """Write ``<service>.json`` for each service into ``folder``; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in documents().items():
        path = folder / f"{name}.json"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """Write the documents into the folder ``argv`` names, or ``openapi/``."""
    folder = Path(argv[0]) if argv else DEFAULT_FOLDER
    for path in write(folder):
        print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
