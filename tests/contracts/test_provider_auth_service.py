"""Provider verification of auth-service against the pact user-service wrote.

The real app runs on a real socket over a real SQLite credential store; the
provider states seed that store in-process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from auth_service.app import create_app
from auth_service.credentials import CredentialStore
from auth_service.settings import Settings
from tests.contracts.committed_pacts import pact_path
from tests.contracts.verification import verify_every_interaction
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PACT_FILE = pact_path("user-service", "auth-service")


@pytest.fixture
def credential_store(tmp_path: Path) -> Iterator[CredentialStore]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'auth.db'}")
    with CredentialStore.from_settings(settings) as store:
        yield store


@pytest.mark.contract
def test_auth_service_honours_user_service_pact(credential_store: CredentialStore) -> None:
    def alice_has_her_password() -> None:
        for username in credential_store.usernames():
            credential_store.remove(username)
        credential_store.add("alice", "correct-horse-battery-staple")

    states = {
        "user credentials are valid": alice_has_her_password,
        "user credentials are invalid": alice_has_her_password,
    }
    with serve_in_thread(create_app(credential_store=credential_store)) as url:
        verify_every_interaction("auth-service", PACT_FILE, url, states)
