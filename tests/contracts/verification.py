"""Provider verification that cannot pass by verifying nothing."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pact import Verifier

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

# The FFI logs every state-change call at INFO; its own warnings are what matters.
logging.getLogger("pact.ffi").setLevel(logging.WARNING)


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
) -> Verifier:
    """Prepare a verification of ``pact_file`` against the provider at ``base_url``.

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
) -> None:
    """Verify ``pact_file`` and check that every one of its interactions was verified.

    pact-python 4.2 reports success for an empty or unreadable source, so the
    interactions verified are checked against the file, which must hold some.
    """
    verifier = make_verifier(provider, pact_file, base_url, states)
    run(verifier)
    verified = [
        result["description"]
        for result in verifier.results["interactionResults"]
        if result["result"] == "OK"
    ]
    expected = [interaction["description"] for interaction in interactions_in(pact_file)]
    assert expected, f"{pact_file.name} holds no interactions"
    assert sorted(verified) == sorted(expected), verifier.output(strip_ansi=True)
