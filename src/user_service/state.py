"""The collaborators an app works with, swappable while it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servicekit.metrics import Metrics
    from user_service.accounts import AccountStore
    from user_service.auth_client import CredentialsVerifier


@dataclass
class ServiceState:
    """Mutable collaborators of one app, looked up on every request.

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
