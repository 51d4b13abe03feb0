"""What a service needs to call another: its URL, its client token, and the TLS it trusts.

A caller's settings for one upstream share a prefix, such as ``USER_SERVICE_AUTH_``
(user-service calling auth-service) or ``FRONTEND_WEB_USER_SERVICE_`` (frontend-web
calling user-service), and the same suffixes:

- ``URL``: the upstream's base URL. ``http://`` is accepted for a loopback host
  only (``127.0.0.0/8``, ``::1``, ``localhost``), unless ``ALLOW_PLAINTEXT`` is
  true, for a service mesh that encrypts the hop itself.
- ``TOKEN_FILE`` or ``TOKEN``: the client token sent in ``Authorization: Bearer``;
  the file's content, stripped of surrounding white space, is the token. One of
  them, never both. An empty ``TOKEN`` (or ``TOKEN_FILE``) counts as unset.
- ``CA_FILE``: the PEM certificates the upstream's certificate is verified
  against; the system's trust store when unset. Host names are always checked.

Every check raises ``ValueError`` with a message that names the setting and says
why, and never shows a token.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import HttpUrl, SecretStr, ValidationError

if TYPE_CHECKING:
    from pathlib import Path

REJECTED_TOKEN_RETRY_AFTER = 60
"""Seconds advised in ``Retry-After`` when an upstream refuses the caller's client token.

A refused token is no passing fault: an operator has to put the right one in
place, which takes minutes. Asking sooner would only add refused calls and
error lines; much later would keep callers away once it is fixed.
"""

_TOKEN = re.compile(r"[\x21-\x7e]+")
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class Upstream:
    """A service called, and the names of the caller's settings for it.

    Attributes:
        service: The upstream's name, such as ``"auth-service"``.
        prefix: The prefix of the caller's settings for it, such as ``"USER_SERVICE_AUTH_"``.
    """

    service: str
    prefix: str

    @property
    def url_setting(self) -> str:
        """The setting holding the upstream's base URL."""
        return f"{self.prefix}URL"

    @property
    def token_setting(self) -> str:
        """The setting holding the client token itself."""
        return f"{self.prefix}TOKEN"

    @property
    def token_file_setting(self) -> str:
        """The setting naming a file that holds the client token."""
        return f"{self.prefix}TOKEN_FILE"

    @property
    def ca_file_setting(self) -> str:
        """The setting naming the CA certificates the upstream is verified against."""
        return f"{self.prefix}CA_FILE"

    @property
    def allow_plaintext_setting(self) -> str:
        """The setting that accepts ``http://`` to a host other than a loopback one."""
        return f"{self.prefix}ALLOW_PLAINTEXT"

    @property
    def token_settings(self) -> str:
        """Both token settings, for messages: ``"X_TOKEN_FILE or X_TOKEN"``."""
        return f"{self.token_file_setting} or {self.token_setting}"


class MissingClientTokenError(ValueError):
    """No client token is configured for an upstream that requires one."""

    def __init__(self, upstream: Upstream) -> None:
        """Say which settings hold the token.

        Args:
            upstream: The upstream called.
        """
        super().__init__(
            f"no client token for {upstream.service}: set {upstream.token_settings} "
            f"to the token {upstream.service} issued for this service"
        )


def base_url(value: str) -> str:
    """Return ``value`` as a base URL: ``http://`` or ``https://`` with a host, no trailing slash.

    Args:
        value: The URL, surrounding white space ignored.

    Returns:
        The normalised URL.

    Raises:
        ValueError: If it is no such URL, or has a query or a fragment.
    """
    try:
        url = HttpUrl(value.strip())
    except ValidationError:
        msg = "must be an http:// or https:// URL with a host"
        raise ValueError(msg) from None
    if url.query or url.fragment:
        msg = "must be a base URL, without a query or a fragment"
        raise ValueError(msg)
    return str(url).rstrip("/")


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` is ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    host = host.lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def check_plaintext(url: str, upstream: Upstream, *, allowed: bool) -> str:
    """Refuse an ``http://`` URL to a host that is not a loopback one, unless ``allowed``.

    Args:
        url: A base URL, as :func:`base_url` returns it.
        upstream: The upstream it is the URL of.
        allowed: The value of the caller's ``ALLOW_PLAINTEXT`` setting.

    Returns:
        ``url``.

    Raises:
        ValueError: If ``url`` is plain ``http://`` to another host and not ``allowed``.
    """
    parsed = HttpUrl(url)
    if parsed.scheme == "https" or allowed or is_loopback(parsed.host or ""):
        return url
    msg = (
        f"is http:// to {parsed.host}, which is not a loopback host: the client token "
        f"and the passwords sent to {upstream.service} would cross the network in "
        f"plain text. Use https://, or set {upstream.allow_plaintext_setting}=true if "
        "something else encrypts this hop (a service mesh)"
    )
    raise ValueError(msg)


def token_value(value: SecretStr | None, *, setting: str) -> SecretStr | None:
    """Check a client token given as a setting's value.

    Args:
        value: The value; surrounding white space is ignored, and an empty one
            counts as unset.
        setting: The setting's name, for the error message.

    Returns:
        The token, or ``None`` when unset.

    Raises:
        ValueError: If it has characters a bearer token cannot have.
    """
    if value is None:
        return None
    token = value.get_secret_value().strip()
    if not token:
        return None
    return _checked(token, setting)


def read_token_file(path: Path, *, setting: str) -> SecretStr:
    """Read a client token from ``path``: the file's content, stripped of surrounding white space.

    The file is read at once; it is meant to be a few dozen bytes.

    Args:
        path: The file.
        setting: The setting that named it, for the error message.

    Returns:
        The token.

    Raises:
        ValueError: If the file cannot be read as text, is empty, or holds characters a
            bearer token cannot have. The message names the setting and the file,
            never what the file holds.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not text"
        msg = f"{setting}: cannot read the token file {path}: {reason}"
        raise ValueError(msg) from None
    if not token:
        msg = f"{setting}: the token file {path} is empty"
        raise ValueError(msg)
    return _checked(token, f"{setting}: the token in {path}")


def client_token(
    value: SecretStr | None, file: Path | None, upstream: Upstream
) -> SecretStr | None:
    """Return the client token from the ``TOKEN`` or the ``TOKEN_FILE`` setting.

    Args:
        value: The ``TOKEN`` setting, checked by :func:`token_value`.
        file: The ``TOKEN_FILE`` setting.
        upstream: The upstream the token is for.

    Returns:
        The token, or ``None`` when neither is set.

    Raises:
        ValueError: If both are set, or the file cannot be read (see :func:`read_token_file`).
    """
    if file is None:
        return value
    if value is not None:
        msg = (
            f"{upstream.token_file_setting} and {upstream.token_setting} are both set; "
            "set only one of them"
        )
        raise ValueError(msg)
    return read_token_file(file, setting=upstream.token_file_setting)


def require_token(token: SecretStr | None, upstream: Upstream) -> str:
    """Return the token a production client must send ``upstream``.

    Args:
        token: The configured token, from :func:`client_token`.
        upstream: The upstream called.

    Returns:
        The token itself.

    Raises:
        MissingClientTokenError: If there is none; its message names both settings.
    """
    if token is None:
        raise MissingClientTokenError(upstream)
    return token.get_secret_value()


def bearer_authorization(token: str) -> str:
    """Return the ``Authorization`` header value that carries ``token``: ``Bearer <token>``.

    Args:
        token: The client token.

    Raises:
        ValueError: If it has characters a bearer token cannot have; the message
            does not show it.
    """
    return f"Bearer {_checked(token, 'the client token').get_secret_value()}"


def check_ca_file(path: Path | None, *, setting: str) -> Path | None:
    """Check that ``path`` holds PEM certificates a TLS client can verify against.

    Args:
        path: The file, or ``None`` for the system's trust store.
        setting: The setting that named it, for the error message.

    Returns:
        ``path``.

    Raises:
        ValueError: If it does not exist, cannot be read, or holds no PEM certificate.
    """
    if path is not None:
        _verify_context(path, setting=setting)
    return path


def client_ssl_context(ca_file: Path | None = None, *, setting: str = "CA file") -> ssl.SSLContext:
    """Return the TLS context a caller verifies its upstream's certificate with.

    Certificates and host names are always checked, with TLS 1.2 at least.

    Args:
        ca_file: PEM certificates to trust; the system's trust store when omitted.
        setting: The setting that named ``ca_file``, for the error message.

    Returns:
        The context, for aiohttp's ``TCPConnector(ssl=...)``.

    Raises:
        ValueError: If ``ca_file`` cannot be loaded (see :func:`check_ca_file`).
    """
    if ca_file is None:
        context = ssl.create_default_context()
    else:
        context = _verify_context(ca_file, setting=setting)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _verify_context(path: Path, *, setting: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        msg = f"{setting}: {path} holds no PEM certificate"
    except OSError as error:
        msg = f"{setting}: cannot read {path}: {error.strerror or 'unreadable'}"
    raise ValueError(msg)


def _checked(token: str, where: str) -> SecretStr:
    if not _TOKEN.fullmatch(token):
        msg = f"{where} must be visible ASCII characters, without spaces"
        raise ValueError(msg)
    return SecretStr(token)
