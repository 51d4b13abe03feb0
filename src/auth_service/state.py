"""The collaborators an app of auth-service works with, and how a handler finds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from fastapi import FastAPI

    from auth_service.authenticator import Authenticator
    from auth_service.hash_pool import HashPool
    from auth_service.metrics import AuthMetrics
    from auth_service.store import CredentialStore
    from servicekit.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ServiceState:
    """The collaborators of one app, kept in ``app.state.service``.

    Attributes:
        authenticator: Checks credentials, in the hash pool, under the lockout rule.
        store: Keeps the credentials.
        metrics: The app's Prometheus metrics.
        auth_metrics: The metrics of validations and hashing.
        ping_timeout_seconds: How long ``/readyz`` waits for the database.
    """

    authenticator: Authenticator
    store: CredentialStore
    metrics: Metrics
    auth_metrics: AuthMetrics
    ping_timeout_seconds: float


def service_state_of(app: FastAPI) -> ServiceState:
    """Return the collaborators of ``app``, an app built by ``create_app``.

    Every handler finds its collaborators through this, on each request.
    """
    return cast("ServiceState", app.state.service)


def hash_pool_of(app: FastAPI) -> HashPool:
    """Return the hash pool of an app built by ``create_app``.

    Args:
        app: The application.
    """
    return service_state_of(app).authenticator.pool
