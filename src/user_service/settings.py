"""Settings of user-service, read from ``USER_SERVICE_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path  # noqa: TC003 - pydantic reads the annotation at runtime

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from servicekit import upstream
from servicekit.database_url import DatabaseSettings, database_url_field

AUTH_SERVICE = upstream.Upstream("auth-service", "USER_SERVICE_AUTH_")
"""auth-service, as user-service calls it: its settings are ``USER_SERVICE_AUTH_*``."""


class Settings(DatabaseSettings):
    """Configuration of user-service.

    The database settings (``database_url``, ``database_timeout_seconds``,
    ``postgres_max_connections``) are those of
    :class:`~servicekit.database_url.DatabaseSettings`.

    Attributes:
        auth_url: Base URL of auth-service (``USER_SERVICE_AUTH_URL``); ``http://``
            only to a loopback host, unless ``auth_allow_plaintext``.
        auth_allow_plaintext: Accept an ``http://`` ``auth_url`` to any host
            (``USER_SERVICE_AUTH_ALLOW_PLAINTEXT``), for a service mesh that
            encrypts the hop itself.
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
        auth_token: The client token sent to auth-service (``USER_SERVICE_AUTH_TOKEN``).
        auth_token_file: A file holding that token instead
            (``USER_SERVICE_AUTH_TOKEN_FILE``), its content stripped of surrounding
            white space; not with ``auth_token``.
        auth_ca_file: PEM certificates that auth-service's certificate is verified
            against (``USER_SERVICE_AUTH_CA_FILE``); the system's trust store when unset.
        database_url: Where accounts are kept (``USER_SERVICE_DATABASE_URL``).
        sqlite_max_queued_creates: The most creates waiting, per worker process,
            for the SQLite transaction that commits them; one more is refused
            with 503 at once, rather than held in memory.
        idempotency_ttl_seconds: How long an ``Idempotency-Key`` is remembered.
        idempotency_lease_seconds: After how long an unfinished request's key is
            taken to be abandoned (its process died) and may be used again.
        max_body_bytes: The largest request body accepted.
        client_token_cache_seconds: How long the answer to "which client holds
            this token" is used again before the database is asked anew; a
            removed token is refused at the latest this long after ``clients
            remove`` (0: ask every time).
    """

    model_config = SettingsConfigDict(env_prefix="USER_SERVICE_", frozen=True)

    auth_allow_plaintext: bool = False
    auth_url: str = "http://127.0.0.1:8001"
    auth_connect_timeout: float = Field(default=1.0, gt=0)
    auth_timeout: float = Field(default=3.0, gt=0)
    auth_retries: int = Field(default=2, ge=0, le=5)
    auth_keepalive_seconds: float = Field(default=4.0, gt=0)
    auth_min_budget_seconds: float = Field(default=0.05, gt=0)
    auth_max_in_flight: int = Field(default=64, ge=1)
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    auth_ca_file: Path | None = None
    database_url: str = database_url_field("sqlite:///var/user-service.db")
    sqlite_max_queued_creates: int = Field(default=1024, ge=1)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    idempotency_lease_seconds: int = Field(default=60, gt=0)
    max_body_bytes: int = Field(default=16 * 1024, gt=0)
    client_token_cache_seconds: float = Field(default=5.0, ge=0)

    @field_validator("auth_url")
    @classmethod
    def _auth_url_is_http(cls, value: str, info: ValidationInfo) -> str:
        allowed = info.data.get("auth_allow_plaintext", False)
        return upstream.check_plaintext(upstream.base_url(value), AUTH_SERVICE, allowed=allowed)

    @field_validator("auth_token")
    @classmethod
    def _auth_token(cls, value: SecretStr | None) -> SecretStr | None:
        return upstream.token_value(value, setting=AUTH_SERVICE.token_setting)

    @field_validator("auth_token_file", "auth_ca_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("auth_token_file")
    @classmethod
    def _auth_token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        upstream.client_token(info.data.get("auth_token"), value, AUTH_SERVICE)
        return value

    @field_validator("auth_ca_file")
    @classmethod
    def _auth_ca_file(cls, value: Path | None) -> Path | None:
        return upstream.check_ca_file(value, setting=AUTH_SERVICE.ca_file_setting)

    @property
    def auth_client_token(self) -> SecretStr | None:
        """The client token for auth-service, from ``auth_token_file`` or ``auth_token``.

        Raises:
            ValueError: If the token file can no longer be read.
        """
        return upstream.client_token(self.auth_token, self.auth_token_file, AUTH_SERVICE)

    @property
    def idempotency_ttl(self) -> timedelta:
        """How long an ``Idempotency-Key`` is remembered."""
        return timedelta(seconds=self.idempotency_ttl_seconds)

    @property
    def idempotency_lease(self) -> timedelta:
        """After how long an unfinished request's key may be used again."""
        return timedelta(seconds=self.idempotency_lease_seconds)
