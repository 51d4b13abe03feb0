"""Configuration of frontend-web, read from the environment."""

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from frontend_web.client import DEFAULT_MAX_IN_FLIGHT

MIN_CSRF_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """frontend-web's settings, each read from a ``FRONTEND_WEB_``-prefixed variable.

    Attributes:
        user_service_url: The base URL of user-service (``FRONTEND_WEB_USER_SERVICE_URL``).
        user_service_timeout: The most seconds a call to user-service may take
            (``FRONTEND_WEB_USER_SERVICE_TIMEOUT``); sent to user-service as its time
            budget in ``X-Time-Budget-Ms``.
        user_service_max_in_flight: The most calls to user-service one process has
            in flight at once (``FRONTEND_WEB_USER_SERVICE_MAX_IN_FLIGHT``), at least 1.
            A sign-up past it is answered at once with the busy page (503,
            ``Retry-After: 1``) without calling user-service.
        csrf_secret: The key that signs the forms' CSRF tokens
            (``FRONTEND_WEB_CSRF_SECRET``), at least 32 characters. When unset, each
            app makes a random one when it is created. That is right for a single
            process, but with ``--workers N`` or several replicas each process would
            have its own key and refuse, with a 403, a form that another process
            rendered; set the same secret for all of them there. Changing it
            invalidates every form already on a screen (its next submit gets a 403
            and a fresh form).
        max_body_bytes: The largest request body accepted
            (``FRONTEND_WEB_MAX_BODY_BYTES``).
    """

    model_config = SettingsConfigDict(env_prefix="FRONTEND_WEB_")

    user_service_url: str = "http://127.0.0.1:8000"
    user_service_timeout: float = Field(default=10.0, gt=0)
    user_service_max_in_flight: int = Field(default=DEFAULT_MAX_IN_FLIGHT, ge=1)
    csrf_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=16_384, gt=0)

    @field_validator("csrf_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < MIN_CSRF_SECRET_LENGTH:
            msg = f"must have at least {MIN_CSRF_SECRET_LENGTH} characters"
            raise ValueError(msg)
        return secret
