"""Provider verifications of user-service against the pact frontend-web wrote.

The real app runs on a real socket. In the main verification only the
credentials verifier is swapped, in-process, through the seed's
``set_auth_verifier`` / ``reset_state`` seam. In the chain check nothing is
swapped: the real AuthClient talks to a Pact stub server replaying the pact
user-service holds with auth-service.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import TYPE_CHECKING

import pytest

import user_service
from tests.contracts.committed_pacts import pact_path
from tests.contracts.credentials import USERNAME
from tests.contracts.verification import make_verifier, run, verify_every_interaction
from tests.support.log_scan import register_log
from tests.support.servers import free_port, serve_in_thread, venv_command, wait_for_port
from user_service.auth_client import AuthServiceRateLimitedError, AuthServiceUnavailableError
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from user_service.accounts import AccountStore

PACT_FILE = pact_path("frontend-web", "user-service")
AUTH_PACT_FILE = pact_path("user-service", "auth-service")
LOCKOUT_SECONDS = 900


class StubAuthVerifier:
    """Stands in for auth-service: gives one fixed verdict, or raises one fixed failure."""

    def __init__(self, *, valid: bool = False, failure: Exception | None = None) -> None:
        self._valid = valid
        self._failure = failure

    async def validate_credentials(self, username: str, password: str) -> bool:
        del username, password
        if self._failure is not None:
            raise self._failure
        return self._valid


def provider_states(
    set_auth_verifier: Callable[[user_service.CredentialsVerifier], None],
    store: Callable[[], AccountStore],
) -> dict[str, Callable[[], None]]:
    """Handlers for the provider states of the frontend-web pact, over one app's seam.

    Args:
        set_auth_verifier: Swaps the app's credentials verifier.
        store: Returns the app's account store.
    """

    def given(verifier: StubAuthVerifier, *usernames: str) -> Callable[[], None]:
        async def seed() -> None:
            await store().reset()
            for username in usernames:
                await store().create(username)

        def handler() -> None:
            asyncio.run(seed())
            set_auth_verifier(verifier)

        return handler

    return {
        "auth accepts credentials": given(StubAuthVerifier(valid=True)),
        "auth rejects credentials": given(StubAuthVerifier(valid=False)),
        "an account for alice already exists": given(StubAuthVerifier(valid=True), USERNAME),
        "auth-service is unavailable": given(
            StubAuthVerifier(failure=AuthServiceUnavailableError("connection refused"))
        ),
        "auth reports too many attempts": given(
            StubAuthVerifier(failure=AuthServiceRateLimitedError(LOCKOUT_SECONDS))
        ),
    }


def answer_200_instead_of_201(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so that it breaks the pact: every 201 becomes a 200."""

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_broken(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 201:
                message = {**message, "status": 200}
            await send(message)

        await app(scope, receive, send_broken)

    return broken


@pytest.mark.contract
def test_user_service_honours_frontend_web_pact() -> None:
    states = provider_states(user_service.set_auth_verifier, lambda: user_service.ACCOUNT_STORE)
    with serve_in_thread(user_service.app) as url:
        verify_every_interaction("user-service", PACT_FILE, url, states)


@pytest.mark.contract
def test_verification_reports_a_provider_that_breaks_the_pact() -> None:
    store = user_service.InMemoryAccountStore()
    app = user_service.create_app(account_store=store)
    state = app.state.service
    states = provider_states(
        lambda verifier: setattr(state, "auth_verifier", verifier), lambda: store
    )
    with serve_in_thread(answer_200_instead_of_201(app)) as url:
        verifier = make_verifier("user-service", PACT_FILE, url, states)
        with pytest.raises(RuntimeError):
            run(verifier)
    failed = [
        result["description"]
        for result in verifier.results["interactionResults"]
        if result["result"] != "OK"
    ]
    assert failed == ["A request to create an account"]
    assert "expected 201 but was 200" in verifier.output(strip_ansi=True)


class PactStubServer:
    """``pact stub`` serving the pact auth-service gave user-service, on a fixed port.

    It can be stopped and started again, so that a provider state can make
    auth-service truly unreachable.
    """

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        register_log(log_path)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._process is not None:
            return
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    venv_command("pact"),
                    "stub",
                    "--file",
                    str(AUTH_PACT_FILE),
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, process=self._process)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def auth_service_stub(tmp_path: Path) -> Iterator[PactStubServer]:
    stub = PactStubServer(tmp_path / "pact-stub.log")
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.mark.contract
def test_chain_frontend_web_pact_is_met_through_auth_service_pact(
    auth_service_stub: PactStubServer,
) -> None:
    store = user_service.InMemoryAccountStore()
    settings = Settings(auth_url=auth_service_stub.url, auth_retries=0)
    app = user_service.create_app(settings, account_store=store)

    def given(*usernames: str, auth_up: bool = True) -> Callable[[], None]:
        async def seed() -> None:
            await store.reset()
            for username in usernames:
                await store.create(username)

        def handler() -> None:
            asyncio.run(seed())
            if auth_up:
                auth_service_stub.start()
            else:
                auth_service_stub.stop()

        return handler

    states = {
        "auth accepts credentials": given(),
        "auth rejects credentials": given(),
        "an account for alice already exists": given(USERNAME),
        "auth-service is unavailable": given(auth_up=False),
        "auth reports too many attempts": given(),
    }
    with serve_in_thread(app) as url:
        verify_every_interaction("user-service", PACT_FILE, url, states)
