"""The collaborators an app of frontend-web works with, and how a handler finds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from fastapi import FastAPI

    from frontend_web.client import FrontendClient
    from frontend_web.csrf import CsrfGuard
    from servicekit.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ServiceState:
    """The collaborators of one app, kept in ``app.state.service``.

    Attributes:
        client: The user-service client (opened by the app's lifespan).
        guard: Issues and checks the forms' CSRF tokens.
        in_flight_retry_delays: Seconds to wait before each retry of a
            submission whose twin is still running at user-service.
        public_https: Whether the page's public address is ``https://`` even
            when the request reached frontend-web over plain HTTP.
        metrics: The app's Prometheus metrics.
    """

    client: FrontendClient
    guard: CsrfGuard
    in_flight_retry_delays: tuple[float, ...]
    public_https: bool
    metrics: Metrics


def service_state_of(app: FastAPI) -> ServiceState:
    """Return the collaborators of ``app``, an app built by ``create_app``.

    Every handler finds its collaborators through this, on each request.
    """
    return cast("ServiceState", app.state.service)
