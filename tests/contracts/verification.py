"""Provider verification that cannot pass by verifying nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from pact import Verifier

from servicekit.client_tokens import new_token, token_digest
from tests.support.log_scan import register_secret

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from servicekit.client_tokens import ClientRegistry

# The FFI logs every state-change call at INFO; its own warnings are what matters.
logging.getLogger("pact.ffi").setLevel(logging.WARNING)
# The state-change server logs each request's headers at DEBUG, and the verifier
# sends it the client token too.
logging.getLogger("pact._server").setLevel(logging.INFO)


def interactions_in(pact_file: Path) -> list[dict[str, Any]]:
    """Return the interactions of a pact file."""
    interactions: list[dict[str, Any]] = json.loads(pact_file.read_text(encoding="utf-8"))[
        "interactions"
    ]
    return interactions


def make_verifier(
    provider: str,
    pact_file: Path,
    base_url: str,
    states: Mapping[str, Callable[[], None]],
    *,
    token: str,
) -> Verifier:
    """Prepare a verification of ``pact_file`` against the provider at ``base_url``.

    Every request is sent with ``token``, the token of a client the provider
    has registered for the verification, in place of the pact's example.

    Raises:
        AssertionError: If the pact names a provider state that ``states`` cannot set up.
    """
    needed = {
        state["name"]
        for interaction in interactions_in(pact_file)
        for state in interaction.get("providerStates", [])
    }
    assert needed <= set(states), f"no handler for provider states {sorted(needed - set(states))}"
    return (
        Verifier(provider, host="127.0.0.1")
        .add_source(pact_file)
        .add_transport(url=base_url)
        .add_custom_header("Authorization", f"Bearer {token}")
        .set_coloured_output(enabled=False)
        .state_handler(dict(states), teardown=False)
    )


def run(verifier: Verifier) -> None:
    """Run ``verifier``, then close the socket of its state-change server.

    pact-python 4.2 shuts that server down after a verification but never
    closes its listening socket, which would leak one socket per run.
    """
    try:
        verifier.verify()
    finally:
        server = getattr(getattr(verifier, "_state_handler", None), "_server", None)
        if server is not None:
            server.server_close()


def verify_every_interaction(
    provider: str,
    pact_file: Path,
    base_url: str,
    states: Mapping[str, Callable[[], None]],
    *,
    token: str,
) -> None:
    """Verify ``pact_file`` and check that every one of its interactions was verified.

    pact-python 4.2 reports success for an empty or unreadable source, so the
    interactions verified are checked against the file, which must hold some.
    """
    verifier = make_verifier(provider, pact_file, base_url, states, token=token)
    run(verifier)
    verified = [
        result["description"]
        for result in verifier.results["interactionResults"]
        if result["result"] == "OK"
    ]
    expected = [interaction["description"] for interaction in interactions_in(pact_file)]
    assert expected, f"{pact_file.name} holds no interactions"
    assert sorted(verified) == sorted(expected), verifier.output(strip_ansi=True)


class RegisteredClient:
    """A client registered with a provider for its verification, whose token states revoke.

    The verifier sends one token with every request, so the state of a
    revoked token takes that very token back, and every other state gives it
    back to the client first.
    """

    def __init__(self, registry: Callable[[], ClientRegistry], name: str) -> None:
        """Register a new token for ``name`` in the registry ``registry()`` gives."""
        self._registry = registry
        self.name = name
        self.token = register_secret(new_token())
        self.restore()

    def restore(self) -> None:
        """Let the client call with :attr:`token` again, if it was revoked."""

        async def restore() -> None:
            registry = self._registry()
            if await registry.client_of(token_digest(self.token)) is None:
                await registry.register(self.name, self.token)

        asyncio.run(restore())

    def revoke(self) -> None:
        """Take back every token of the client."""
        asyncio.run(self._registry().revoke(self.name))

    def restoring(self, handler: Callable[[], None]) -> Callable[[], None]:
        """Return ``handler``, after which the client may call with its token again."""

        def restored() -> None:
            self.restore()
            handler()

        return restored
