"""The collaborators an app of user-service works with, and how a handler finds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from fastapi import FastAPI

    from servicekit.metrics import Metrics
    from user_service.accounts import AccountStore
    from user_service.auth_client import CredentialsVerifier


@dataclass
class ServiceState:
    """The collaborators of one app, kept in ``app.state.service``; swappable while it runs.

    Provider-state handlers of the Pact verification replace them in-process,
    so a swap takes effect on the next request without any extra endpoint.

    Attributes:
        auth_verifier: Checks credentials before an account is created.
        account_store: Keeps the accounts.
        metrics: The app's Prometheus metrics.
    """

    auth_verifier: CredentialsVerifier
    account_store: AccountStore
    metrics: Metrics


def service_state_of(app: FastAPI) -> ServiceState:
    """Return the collaborators of ``app``, an app built by ``create_app``.

    Every handler finds its collaborators through this, on each request, so a
    swap takes effect at once. Handlers call it themselves rather than through
    a dependency: on the hot path, each dependency FastAPI solves costs as much
    as a database write.
    """
    return cast("ServiceState", app.state.service)
