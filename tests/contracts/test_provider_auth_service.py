"""Provider verification of auth-service against the pact user-service wrote.

The real app runs on a real socket over a real SQLite credential store; the
provider states seed that store in-process, through the same admin API the
``auth-service users`` commands use. The verifier calls as a client
registered in that store, whose token one provider state revokes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from auth_service.admin import UserAdmin
from auth_service.factory import create_app
from auth_service.settings import Settings
from auth_service.state import hash_pool_of, service_state_of
from tests.contracts.committed_pacts import pact_path
from tests.contracts.credentials import PASSWORD, USERNAME
from tests.contracts.verification import RegisteredClient, verify_every_interaction
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from auth_service.hash_pool import HashSlot

PACT_FILE = pact_path("user-service", "auth-service")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'auth.db'}")


@pytest.fixture
def users(settings: Settings) -> Iterator[UserAdmin]:
    with UserAdmin(settings) as admin:
        yield admin


@pytest.mark.contract
def test_auth_service_honours_user_service_pact(settings: Settings, users: UserAdmin) -> None:
    app = create_app(settings)
    held: list[HashSlot] = []

    def alice_has_her_password() -> None:
        while held:
            held.pop().__exit__(None, None, None)
        for username in users.usernames():
            users.remove(username)
        users.add(USERNAME, PASSWORD)

    def alice_has_too_many_failed_attempts() -> None:
        alice_has_her_password()
        for _ in range(settings.lockout_threshold):
            users.record_failed_attempt(USERNAME)

    def auth_service_is_overloaded() -> None:
        """Take every place the real hash pool gives, as checks queued ahead would."""
        alice_has_her_password()
        pool = hash_pool_of(app)
        while pool.refusal() is None:
            held.append(pool.reserve())

    with serve_in_thread(app) as url:
        client = RegisteredClient(lambda: service_state_of(app).store.clients, "user-service")
        states = {
            "user credentials are valid": alice_has_her_password,
            "user credentials are invalid": alice_has_her_password,
            "alice has too many failed attempts": alice_has_too_many_failed_attempts,
            "auth-service is overloaded": auth_service_is_overloaded,
        }
        states = {name: client.restoring(handler) for name, handler in states.items()}
        states["user-service's client token is revoked"] = client.revoke
        verify_every_interaction("auth-service", PACT_FILE, url, states, token=client.token)
