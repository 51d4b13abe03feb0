"""Provider verifications of user-service against the pact frontend-web wrote.

The real app runs on a real socket. In the main verification only the
credentials verifier is swapped, in-process, through the seed's
``set_auth_verifier`` / ``reset_state`` seam. In the chain check nothing is
swapped: the real AuthClient talks to a Pact stub server replaying the pact
user-service holds with auth-service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import user_service
from tests.contracts.committed_pacts import pact_path
from tests.contracts.verification import make_verifier, run, verify_every_interaction
from tests.support.servers import free_port, run_process, serve_in_thread, venv_command
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

PACT_FILE = pact_path("frontend-web", "user-service")
AUTH_PACT_FILE = pact_path("user-service", "auth-service")


class StubAuthVerifier:
    """A verifier that gives one fixed verdict, standing in for auth-service."""

    def __init__(self, *, valid: bool) -> None:
        self._valid = valid

    async def validate_credentials(self, username: str, password: str) -> bool:
        del username, password
        return self._valid


STATE_NAMES = ("auth accepts credentials", "auth rejects credentials")


def provider_states(
    set_auth_verifier: Callable[[user_service.CredentialsVerifier], None],
    reset_state: Callable[[], None],
) -> dict[str, Callable[[], None]]:
    """Handlers for the provider states of the frontend-web pact, over one app's seam."""

    def auth_accepts_credentials() -> None:
        reset_state()
        set_auth_verifier(StubAuthVerifier(valid=True))

    def auth_rejects_credentials() -> None:
        reset_state()
        set_auth_verifier(StubAuthVerifier(valid=False))

    return dict(zip(STATE_NAMES, (auth_accepts_credentials, auth_rejects_credentials), strict=True))


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
    states = provider_states(user_service.set_auth_verifier, user_service.reset_state)
    with serve_in_thread(user_service.app) as url:
        verify_every_interaction("user-service", PACT_FILE, url, states)


@pytest.fixture
def auth_service_stub(tmp_path: Path) -> Iterator[str]:
    """A Pact stub server answering as auth-service promised user-service it would."""
    port = free_port()
    command = [venv_command("pact"), "stub", "--file", str(AUTH_PACT_FILE), "--port", str(port)]
    with run_process(command, port=port, log_path=tmp_path / "pact-stub.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.contract
def test_chain_frontend_web_pact_is_met_through_auth_service_pact(auth_service_stub: str) -> None:
    store = user_service.InMemoryAccountStore()
    app = user_service.create_app(Settings(auth_url=auth_service_stub), account_store=store)
    states = dict.fromkeys(STATE_NAMES, store.reset)
    with serve_in_thread(app) as url:
        verify_every_interaction("user-service", PACT_FILE, url, states)


@pytest.mark.contract
def test_verification_reports_a_provider_that_breaks_the_pact() -> None:
    app = user_service.create_app()
    state = app.state.service
    states = provider_states(
        lambda verifier: setattr(state, "auth_verifier", verifier), state.account_store.reset
    )
    with serve_in_thread(answer_200_instead_of_201(app)) as url:
        verifier = make_verifier("user-service", PACT_FILE, url, states)
        with pytest.raises(RuntimeError):
            run(verifier)
    failed = {
        result["description"]: result
        for result in verifier.results["interactionResults"]
        if result["result"] != "OK"
    }
    assert list(failed) == ["A request to create an account"]
    assert "expected 201 but was 200" in verifier.output(strip_ansi=True)
