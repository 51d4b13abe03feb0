"""Configuration of frontend-web, read from the environment."""

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from frontend_web.client import DEFAULT_MAX_IN_FLIGHT
from frontend_web.csrf import DEFAULT_MAX_AGE, MIN_SECRET_BYTES


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
        csrf_max_age_seconds: How long a rendered form can be submitted, in whole
            seconds from when it was rendered (``FRONTEND_WEB_CSRF_MAX_AGE_SECONDS``,
            2 hours by default). A later submit is refused with a 403 saying that
            the form expired, and a fresh form.
        public_https: Whether people reach the page over HTTPS
            (``FRONTEND_WEB_PUBLIC_HTTPS``), through a proxy that terminates TLS
            in front of frontend-web. Then the CSRF cookie is ``__Host-csrf``,
            ``Secure``, and the origin a form must come from is ``https://``. A
            request that uvicorn sees as HTTPS counts too: uvicorn takes
            ``X-Forwarded-Proto`` from the addresses in ``FORWARDED_ALLOW_IPS``
            only (the loopback addresses, unless set).
        max_body_bytes: The largest request body accepted
            (``FRONTEND_WEB_MAX_BODY_BYTES``).
    """

    model_config = SettingsConfigDict(env_prefix="FRONTEND_WEB_", hide_input_in_errors=True)

    user_service_url: str = "http://127.0.0.1:8000"
    user_service_timeout: float = Field(default=10.0, gt=0)
    user_service_max_in_flight: int = Field(default=DEFAULT_MAX_IN_FLIGHT, ge=1)
    csrf_secret: SecretStr | None = None
    csrf_max_age_seconds: int = Field(default=DEFAULT_MAX_AGE, ge=1)
    public_https: bool = False
    max_body_bytes: int = Field(default=16_384, gt=0)

    @field_validator("csrf_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_BYTES:
            msg = f"must have at least {MIN_SECRET_BYTES} characters"
            raise ValueError(msg)
        return secret
