"""HTTPS for the ``serve`` command: the certificate settings of a service, checked before serving.

A service serves HTTPS when given both ``<PREFIX>TLS_CERT_FILE`` and
``<PREFIX>TLS_KEY_FILE`` (``AUTH_SERVICE_``, ``USER_SERVICE_``,
``FRONTEND_WEB_``), plain HTTP when given neither. The files are read and
checked once, before any worker starts, so that a wrong one is one clear
error rather than a traceback from every worker.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path  # noqa: TC003 - pydantic reads the annotation at runtime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from collections.abc import Callable

    import uvicorn
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2
"""The oldest TLS version a service accepts."""

_CERT_SETTING = "TLS_CERT_FILE"
_KEY_SETTING = "TLS_KEY_FILE"


class TlsSettings(BaseSettings):
    """Where a service's certificate and key are; read with the service's prefix.

    Attributes:
        tls_cert_file: The PEM certificate chain, the server's certificate first
            (``<PREFIX>TLS_CERT_FILE``).
        tls_key_file: The PEM private key of that certificate, unencrypted
            (``<PREFIX>TLS_KEY_FILE``).
    """

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None


class TlsSettingsError(Exception):
    """The TLS settings cannot be served with; the message names the setting and says why."""


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A certificate and key that load, for uvicorn to serve HTTPS with.

    Attributes:
        cert_file: The PEM certificate chain.
        key_file: The PEM private key.
    """

    cert_file: Path
    key_file: Path

    def uvicorn_options(self) -> dict[str, Any]:
        """Return the options of ``uvicorn.Config`` that serve HTTPS with this certificate.

        The context accepts TLS 1.2 and later only (:func:`modern_tls_context`).
        Every worker builds its own from these options.
        """
        return {
            "ssl_certfile": str(self.cert_file),
            "ssl_keyfile": str(self.key_file),
            "ssl_context_factory": modern_tls_context,
        }


def modern_tls_context(
    _config: uvicorn.Config, default_context: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """Build uvicorn's server context, refusing TLS versions older than 1.2.

    Args:
        _config: The server's configuration.
        default_context: Builds the context uvicorn would use by itself.

    Returns:
        The context.
    """
    context = default_context()
    context.minimum_version = MINIMUM_TLS_VERSION
    return context


def server_certificate(env_prefix: str) -> ServerCertificate | None:
    """Read ``<env_prefix>TLS_CERT_FILE`` and ``<env_prefix>TLS_KEY_FILE``, and check them.

    Both must be set, or neither. The certificate must be PEM, not expired; the
    key PEM, unencrypted, and the key of that certificate.

    Args:
        env_prefix: The service's prefix of settings, e.g. ``"USER_SERVICE_"``.

    Returns:
        The certificate to serve with, or ``None`` (plain HTTP) when neither is set.

    Raises:
        TlsSettingsError: If only one is set, or the files cannot be served with.
    """
    cert_setting, key_setting = env_prefix + _CERT_SETTING, env_prefix + _KEY_SETTING
    try:
        # BaseSettings takes _env_prefix; mypy sees only the fields' __init__.
        settings = TlsSettings(_env_prefix=env_prefix)  # type: ignore[call-arg]
    except ValidationError as error:
        problems = "; ".join(
            f"{env_prefix}{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg']}"
            for problem in error.errors(include_input=False, include_url=False)
        )
        raise TlsSettingsError(problems) from None
    cert_file, key_file = settings.tls_cert_file, settings.tls_key_file
    if cert_file is None and key_file is None:
        return None
    if cert_file is None or key_file is None:
        given, missing = (
            (cert_setting, key_setting) if key_file is None else (key_setting, cert_setting)
        )
        msg = (
            f"{given} is set but {missing} is not: set both to serve HTTPS, or neither to"
            " serve plain HTTP"
        )
        raise TlsSettingsError(msg)
    certificate = _load_certificate(cert_setting, cert_file)
    key = _load_key(key_setting, key_file)
    if _public_bytes(certificate.public_key()) != _public_bytes(key.public_key()):
        msg = (
            f"{key_setting}: the key in {key_file} is not the key of the certificate in"
            f" {cert_file} ({cert_setting})"
        )
        raise TlsSettingsError(msg)
    _check_ssl_loads(cert_setting, key_setting, cert_file, key_file)
    return ServerCertificate(cert_file=cert_file, key_file=key_file)


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        msg = f"{setting}: cannot read {path}: {error.strerror or error}"
        raise TlsSettingsError(msg) from None


def _load_certificate(setting: str, path: Path) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificates(_read(setting, path))[0]
    except ValueError:
        msg = f"{setting}: {path} holds no PEM certificate"
        raise TlsSettingsError(msg) from None
    expiry = certificate.not_valid_after_utc
    if expiry <= datetime.now(UTC):
        msg = f"{setting}: the certificate in {path} expired on {expiry:%Y-%m-%d %H:%M} UTC"
        raise TlsSettingsError(msg)
    return certificate


def _load_key(setting: str, path: Path) -> PrivateKeyTypes:
    data = _read(setting, path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        msg = f"{setting}: the key in {path} is encrypted; give it unencrypted"
    except (ValueError, UnsupportedAlgorithm):
        msg = f"{setting}: {path} holds no PEM private key that can be used"
    raise TlsSettingsError(msg) from None


def _public_bytes(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_ssl_loads(cert_setting: str, key_setting: str, cert_file: Path, key_file: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        msg = (
            f"{cert_setting} and {key_setting}: TLS cannot use {cert_file} and {key_file}: {reason}"
        )
        raise TlsSettingsError(msg) from None
