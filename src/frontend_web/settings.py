"""Configuration of frontend-web, read from the environment."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from frontend_web.client import DEFAULT_MAX_IN_FLIGHT
from frontend_web.csrf import DEFAULT_MAX_AGE, MIN_SECRET_BYTES
from frontend_web.rate_limit import (
    DEFAULT_RATE_LIMIT,
    MEMORY_STORAGE,
    check_storage_url,
    parse_rate,
    parse_trusted_proxies,
)
from servicekit import upstream

USER_SERVICE = upstream.Upstream("user-service", "FRONTEND_WEB_USER_SERVICE_")
"""user-service, as frontend-web calls it: its settings are ``FRONTEND_WEB_USER_SERVICE_*``."""


class Settings(BaseSettings):
    """frontend-web's settings, each read from a ``FRONTEND_WEB_``-prefixed variable.

    Attributes:
        user_service_url: The base URL of user-service (``FRONTEND_WEB_USER_SERVICE_URL``);
            ``http://`` only to a loopback host, unless ``user_service_allow_plaintext``.
        user_service_allow_plaintext: Accept an ``http://`` ``user_service_url`` to
            any host (``FRONTEND_WEB_USER_SERVICE_ALLOW_PLAINTEXT``), for a service
            mesh that encrypts the hop itself.
        user_service_token: The client token sent to user-service
            (``FRONTEND_WEB_USER_SERVICE_TOKEN``).
        user_service_token_file: A file holding that token instead
            (``FRONTEND_WEB_USER_SERVICE_TOKEN_FILE``), its content stripped of
            surrounding white space; not with ``user_service_token``.
        user_service_ca_file: PEM certificates that user-service's certificate is
            verified against (``FRONTEND_WEB_USER_SERVICE_CA_FILE``); the system's
            trust store when unset.
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
            request seen as HTTPS counts too: served over TLS, or with
            ``X-Forwarded-Proto: https`` from a peer in ``trusted_proxies`` (from
            no other).
        max_body_bytes: The largest request body accepted
            (``FRONTEND_WEB_MAX_BODY_BYTES``).
        rate_limit: The sign-up attempts (``POST /signup``) allowed per client
            address (``FRONTEND_WEB_RATE_LIMIT``), in a moving window: limits'
            notation, such as ``10/minute`` (the default) or ``100 per hour``. An
            attempt past it gets a 429 page with ``Retry-After``.
        rate_limit_storage: Where the attempts are counted
            (``FRONTEND_WEB_RATE_LIMIT_STORAGE``): ``memory://`` (the default), in
            each process, right for one; or Redis, ``redis://[:password@]host:port/db``
            or ``rediss://...``, shared by every process and replica using it. If
            Redis cannot be reached, attempts are let through uncounted.
        trusted_proxies: The proxies in front of frontend-web
            (``FRONTEND_WEB_TRUSTED_PROXIES``): IP addresses or CIDR networks,
            comma-separated, none by default. From a peer among them, the client's
            address is the right-most address of ``X-Forwarded-For`` that is not
            one of them, and the scheme is ``X-Forwarded-Proto``'s; from any other
            peer, both headers are ignored and the client is the peer.
    """

    model_config = SettingsConfigDict(env_prefix="FRONTEND_WEB_", hide_input_in_errors=True)

    user_service_allow_plaintext: bool = False
    user_service_url: str = "http://127.0.0.1:8000"
    user_service_timeout: float = Field(default=10.0, gt=0)
    user_service_max_in_flight: int = Field(default=DEFAULT_MAX_IN_FLIGHT, ge=1)
    user_service_token: SecretStr | None = None
    user_service_token_file: Path | None = None
    user_service_ca_file: Path | None = None
    csrf_secret: SecretStr | None = None
    csrf_max_age_seconds: int = Field(default=DEFAULT_MAX_AGE, ge=1)
    public_https: bool = False
    max_body_bytes: int = Field(default=16_384, gt=0)
    rate_limit: str = DEFAULT_RATE_LIMIT
    rate_limit_storage: SecretStr = SecretStr(MEMORY_STORAGE)
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("user_service_url")
    @classmethod
    def _user_service_url(cls, value: str, info: ValidationInfo) -> str:
        allowed = info.data.get("user_service_allow_plaintext", False)
        return upstream.check_plaintext(upstream.base_url(value), USER_SERVICE, allowed=allowed)

    @field_validator("user_service_token")
    @classmethod
    def _user_service_token(cls, value: SecretStr | None) -> SecretStr | None:
        return upstream.token_value(value, setting=USER_SERVICE.token_setting)

    @field_validator("user_service_token_file", "user_service_ca_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("user_service_token_file")
    @classmethod
    def _user_service_token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        upstream.client_token(info.data.get("user_service_token"), value, USER_SERVICE)
        return value

    @field_validator("user_service_ca_file")
    @classmethod
    def _user_service_ca_file(cls, value: Path | None) -> Path | None:
        return upstream.check_ca_file(value, setting=USER_SERVICE.ca_file_setting)

    @property
    def user_service_client_token(self) -> SecretStr | None:
        """The client token for user-service, from the token file or the token setting.

        Raises:
            ValueError: If the token file can no longer be read.
        """
        return upstream.client_token(
            self.user_service_token, self.user_service_token_file, USER_SERVICE
        )

    @field_validator("csrf_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_BYTES:
            msg = f"must have at least {MIN_SECRET_BYTES} characters"
            raise ValueError(msg)
        return secret

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_limit_storage(cls, value: SecretStr) -> SecretStr:
        check_storage_url(value.get_secret_value())
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _trusted_proxies(cls, value: object) -> object:
        if isinstance(value, str | list | tuple):
            return parse_trusted_proxies(value if isinstance(value, str) else map(str, value))
        return value
