"""Settings of user-service, read from ``USER_SERVICE_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, HttpUrl, field_validator
from pydantic_settings import SettingsConfigDict

from servicekit.database_url import DatabaseSettings, database_url_field


class Settings(DatabaseSettings):
    """Configuration of user-service.

    The database settings (``database_url``, ``database_timeout_seconds``,
    ``postgres_max_connections``) are those of
    :class:`~servicekit.database_url.DatabaseSettings`.

    Attributes:
        auth_url: Base URL of auth-service (``USER_SERVICE_AUTH_URL``).
        auth_connect_timeout: Seconds allowed to connect to auth-service.
        auth_timeout: Seconds allowed for a whole call to auth-service.
        auth_retries: Retries of a call to auth-service that was never sent.
        auth_keepalive_seconds: How long an idle connection to auth-service is kept
            for the next call; below auth-service's own keep-alive timeout (uvicorn's
            is 5 s), so that it never closes one under a request.
        auth_min_budget_seconds: The least time worth calling auth-service with; a
            request with less of its time budget left is refused with 503 at once.
        auth_max_in_flight: The most calls to auth-service in flight at once, per
            worker process; one more is refused with 503 at once.
        database_url: Where accounts are kept (``USER_SERVICE_DATABASE_URL``).
        sqlite_max_queued_creates: The most creates waiting, per worker process,
            for the SQLite transaction that commits them; one more is refused
            with 503 at once, rather than held in memory.
        idempotency_ttl_seconds: How long an ``Idempotency-Key`` is remembered.
        idempotency_lease_seconds: After how long an unfinished request's key is
            taken to be abandoned (its process died) and may be used again.
        max_body_bytes: The largest request body accepted.
    """

    model_config = SettingsConfigDict(env_prefix="USER_SERVICE_", frozen=True)

    auth_url: str = "http://127.0.0.1:8001"
    auth_connect_timeout: float = Field(default=1.0, gt=0)
    auth_timeout: float = Field(default=3.0, gt=0)
    auth_retries: int = Field(default=2, ge=0, le=5)
    auth_keepalive_seconds: float = Field(default=4.0, gt=0)
    auth_min_budget_seconds: float = Field(default=0.05, gt=0)
    auth_max_in_flight: int = Field(default=64, ge=1)
    database_url: str = database_url_field("sqlite:///var/user-service.db")
    sqlite_max_queued_creates: int = Field(default=1024, ge=1)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    idempotency_lease_seconds: int = Field(default=60, gt=0)
    max_body_bytes: int = Field(default=16 * 1024, gt=0)

    @field_validator("auth_url")
    @classmethod
    def _auth_url_is_http(cls, value: str) -> str:
        url = HttpUrl(value.strip())
        if url.query or url.fragment:
            msg = "must be a base URL, without a query or a fragment"
            raise ValueError(msg)
        return str(url).rstrip("/")

    @property
    def idempotency_ttl(self) -> timedelta:
        """How long an ``Idempotency-Key`` is remembered."""
        return timedelta(seconds=self.idempotency_ttl_seconds)

    @property
    def idempotency_lease(self) -> timedelta:
        """After how long an unfinished request's key may be used again."""
        return timedelta(seconds=self.idempotency_lease_seconds)
