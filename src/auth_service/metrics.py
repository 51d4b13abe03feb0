"""The metrics of auth-service beyond those every service keeps of its requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from auth_service.authenticator import Outcome

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

UNAVAILABLE = "unavailable"
"""The validation outcome counted when the database failed."""


class AuthMetrics:
    """The metrics of auth-service beyond those of every request.

    Attributes:
        validations: Validations, by outcome: valid, invalid, locked,
            overloaded, abandoned, unavailable.
        argon2_operations: argon2id computations, by operation: hash, verify.
        pending_hashes: Password checks running or waiting.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create the metrics in ``registry``; ``pending_hashes`` is for the pool to report to."""
        self.validations = Counter(
            "auth_validations",
            "Credential validations, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in (*Outcome, UNAVAILABLE):
            self.validations.labels(outcome)
        self.argon2_operations = Counter(
            "auth_argon2_operations",
            "argon2id computations, by operation.",
            ["operation"],
            registry=registry,
        )
        for operation in ("hash", "verify"):
            self.argon2_operations.labels(operation)
        self.pending_hashes = Gauge(
            "auth_pending_hashes", "Password checks running or waiting.", registry=registry
        )

    def count_argon2(self, operation: str) -> None:
        """Count one argon2id computation; safe from any thread."""
        self.argon2_operations.labels(operation).inc()
