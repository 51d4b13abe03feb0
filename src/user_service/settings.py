"""Settings of user-service, read from ``USER_SERVICE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, HttpUrl, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of user-service.

    Attributes:
        auth_url: Base URL of auth-service (``USER_SERVICE_AUTH_URL``).
        auth_connect_timeout: Seconds allowed to connect to auth-service.
        auth_timeout: Seconds allowed for a whole call to auth-service.
    """

    model_config = SettingsConfigDict(env_prefix="USER_SERVICE_", frozen=True)

    auth_url: str = "http://127.0.0.1:8001"
    auth_connect_timeout: float = Field(default=1.0, gt=0)
    auth_timeout: float = Field(default=3.0, gt=0)

    @field_validator("auth_url")
    @classmethod
    def _auth_url_is_http(cls, value: str) -> str:
        HttpUrl(value)
        return value.rstrip("/")
