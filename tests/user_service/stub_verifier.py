"""A credentials verifier that gives a fixed verdict and records what it was asked."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingVerifier:
    """Stands in for auth-service where the auth client is not what is tested.

    Attributes:
        valid: The verdict given to every call.
        calls: The ``(username, password)`` of every call, in order.
    """

    valid: bool = True
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def validate_credentials(self, username: str, password: str) -> bool:
        self.calls.append((username, password))
        return self.valid
