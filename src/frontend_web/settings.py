"""Configuration of frontend-web, read from the environment."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """frontend-web's settings, each read from a ``FRONTEND_WEB_``-prefixed variable.

    Attributes:
        user_service_url: The base URL of user-service (``FRONTEND_WEB_USER_SERVICE_URL``).
    """

    model_config = SettingsConfigDict(env_prefix="FRONTEND_WEB_")

    user_service_url: str = "http://127.0.0.1:8000"
