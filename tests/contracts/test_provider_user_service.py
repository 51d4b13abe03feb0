"""Provider verifications of user-service against the pact frontend-web wrote.

The real app runs on a real socket. In the main verification only the
credentials verifier is swapped, in-process, through the seed's
``set_auth_verifier`` / ``reset_state`` seam. In the chain check nothing is
swapped: the real AuthClient talks to a Pact stub server replaying the pact
user-service holds with auth-service. In each, the verifier calls as a
client registered in the app's store (frontend-web), whose token one
provider state revokes.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

import user_service
from servicekit.client_tokens import new_token
from tests.contracts.committed_pacts import pact_path
from tests.contracts.credentials import IDEMPOTENCY_KEY, USERNAME
from tests.contracts.verification import (
    RegisteredClient,
    interactions_in,
    make_verifier,
    run,
    verify_every_interaction,
)
from tests.support.log_scan import register_log, register_secret
from tests.support.servers import free_port, serve_in_thread, venv_command, wait_for_port
from user_service.auth_client import (
    AuthServiceOverloadedError,
    AuthServiceRateLimitedError,
    AuthServiceTimeoutError,
    AuthServiceUnavailableError,
)
from user_service.registration import idempotency_claim
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from user_service.accounts import AccountStore

PACT_FILE = pact_path("frontend-web", "user-service")
AUTH_PACT_FILE = pact_path("user-service", "auth-service")
LOCKOUT_SECONDS = 900
OVERLOADED_RETRY_AFTER = 1


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


async def seed(store: AccountStore, *, account: bool = False, key: str | None = None) -> None:
    """Empty ``store``, then give it alice's account and her form's idempotency key.

    Args:
        store: The app's account store.
        account: Whether alice has an account.
        key: ``"completed"`` if the key's request created the account,
            ``"in progress"`` if a request holds the key and has not finished.
    """
    await store.reset()
    claim = idempotency_claim(IDEMPOTENCY_KEY, USERNAME)
    if key is not None:
        await store.claim(claim)
    if account:
        await store.create(USERNAME, idempotency=claim if key == "completed" else None)


def revoking(
    client: RegisteredClient, states: dict[str, Callable[[], None]]
) -> dict[str, Callable[[], None]]:
    """Return ``states``, each giving the client its token back, and the state that revokes it."""
    restored = {name: client.restoring(handler) for name, handler in states.items()}
    return {**restored, "frontend-web's client token is revoked": client.revoke}


def provider_states(
    set_auth_verifier: Callable[[user_service.CredentialsVerifier], None],
    store: Callable[[], AccountStore],
) -> tuple[RegisteredClient, dict[str, Callable[[], None]]]:
    """The client the verifier calls as, and the handlers of the frontend-web pact's states.

    Call it while the app is served: the client is registered in its store.

    Args:
        set_auth_verifier: Swaps the app's credentials verifier.
        store: Returns the app's account store.
    """

    def given(
        verifier: StubAuthVerifier, *, account: bool = False, key: str | None = None
    ) -> Callable[[], None]:
        def handler() -> None:
            asyncio.run(seed(store(), account=account, key=key))
            set_auth_verifier(verifier)

        return handler

    accepts = StubAuthVerifier(valid=True)
    client = RegisteredClient(lambda: store().clients, "frontend-web")
    states = {
        "auth accepts credentials": given(accepts),
        "auth rejects credentials": given(StubAuthVerifier(valid=False)),
        "an account for alice already exists": given(accepts, account=True),
        "an account for alice was created with this idempotency key": given(
            accepts, account=True, key="completed"
        ),
        "a request with this idempotency key is in progress": given(accepts, key="in progress"),
        "auth-service is unavailable": given(
            StubAuthVerifier(failure=AuthServiceUnavailableError("connection refused"))
        ),
        "auth-service does not answer in time": given(
            StubAuthVerifier(failure=AuthServiceTimeoutError("no answer"))
        ),
        "auth reports too many attempts": given(
            StubAuthVerifier(failure=AuthServiceRateLimitedError(LOCKOUT_SECONDS))
        ),
        "auth-service is overloaded": given(
            StubAuthVerifier(failure=AuthServiceOverloadedError(OVERLOADED_RETRY_AFTER))
        ),
    }
    return client, revoking(client, states)


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
    with serve_in_thread(user_service.app) as url:
        client, states = provider_states(
            user_service.set_auth_verifier, lambda: user_service.ACCOUNT_STORE
        )
        verify_every_interaction("user-service", PACT_FILE, url, states, token=client.token)


@pytest.mark.contract
def test_verification_reports_a_provider_that_breaks_the_pact() -> None:
    store = user_service.InMemoryAccountStore()
    app = user_service.create_app(account_store=store)
    state = app.state.service
    client, states = provider_states(
        lambda verifier: setattr(state, "auth_verifier", verifier), lambda: store
    )
    with serve_in_thread(answer_200_instead_of_201(app)) as url:
        verifier = make_verifier("user-service", PACT_FILE, url, states, token=client.token)
        with pytest.raises(RuntimeError):
            run(verifier)
    failed = {
        result["description"]
        for result in verifier.results["interactionResults"]
        if result["result"] != "OK"
    }
    answered_201 = {
        interaction["description"]
        for interaction in interactions_in(PACT_FILE)
        if interaction["response"]["status"] == 201
    }
    assert (
        failed
        == answered_201
        == {
            "A request to create an account",
            "A retry of a request that created the account",
        }
    )
    assert "expected 201 but was 200" in verifier.output(strip_ansi=True)


class PactStubServer:
    """``pact stub`` serving the pact auth-service gave user-service, on a fixed port.

    Provider states can make auth-service truly unreachable (:meth:`stop`), or
    reachable but silent (:meth:`silence`: a socket that accepts connections
    and never answers), and bring the stub back (:meth:`start`).
    """

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        register_log(log_path)
        self._process: subprocess.Popen[bytes] | None = None
        self._silent: socket.socket | None = None

    def start(self) -> None:
        if self._process is not None:
            return
        self._close_silent_socket()
        # At "info" the stub logs each request's headers, user-service's client token among them.
        command = [venv_command("pact"), "stub", "--file", str(AUTH_PACT_FILE), "-l", "warn"]
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*command, "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, process=self._process)

    def stop(self) -> None:
        self._close_silent_socket()
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def silence(self) -> None:
        self.stop()
        self._silent = socket.create_server(("127.0.0.1", self.port))

    def _close_silent_socket(self) -> None:
        if self._silent is not None:
            self._silent.close()
            self._silent = None


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
    settings = Settings(
        auth_url=auth_service_stub.url,
        auth_token=SecretStr(register_secret(new_token())),
        auth_retries=0,
        auth_timeout=0.5,
    )
    app = user_service.create_app(settings, account_store=store)
    auth = {
        "up": auth_service_stub.start,
        "down": auth_service_stub.stop,
        "silent": auth_service_stub.silence,
    }

    def given(
        *, auth_is: str = "up", account: bool = False, key: str | None = None
    ) -> Callable[[], None]:
        def handler() -> None:
            asyncio.run(seed(store, account=account, key=key))
            auth[auth_is]()

        return handler

    client = RegisteredClient(lambda: store.clients, "frontend-web")
    states = {
        "auth accepts credentials": given(),
        "auth rejects credentials": given(),
        "an account for alice already exists": given(account=True),
        "an account for alice was created with this idempotency key": given(
            account=True, key="completed"
        ),
        "a request with this idempotency key is in progress": given(key="in progress"),
        "auth-service is unavailable": given(auth_is="down"),
        "auth-service does not answer in time": given(auth_is="silent"),
        "auth reports too many attempts": given(),
        "auth-service is overloaded": given(),
    }
    with serve_in_thread(app) as url:
        verify_every_interaction(
            "user-service", PACT_FILE, url, revoking(client, states), token=client.token
        )
