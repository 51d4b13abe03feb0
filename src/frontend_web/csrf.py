"""CSRF protection of the forms: a server-signed cookie, timestamped form tokens, origin checks.

Each browser holds a cookie minted by the server: a random nonce signed with
the app's secret. A value the server did not sign (made up by a client, or
signed under another secret) is never adopted: the browser is given a fresh
one instead. Each rendered form carries a token, the idempotency key of the
form with the time it was issued, signed under a key derived from the secret
and the browser's nonce. A submit is accepted only when its token is at most
the maximum age old and matches the cookie it came with and the key it
carries. Another site can make a browser send the cookie, but cannot read it
or the page, so it cannot forge a token; and binding the idempotency key means
that frontend-web forwards to user-service only keys that it issued itself.

Signing and timestamps are itsdangerous's. The signature does not stop a
party that can write cookies for this host from planting a value it had
minted for itself, with the token of a form it loaded: over HTTPS the cookie
is named with the ``__Host-`` prefix, which no other host (a sibling
subdomain, a network attacker writing plain-HTTP cookies) can set; and on
either scheme a submit whose ``Origin`` is another origin, or whose
``Sec-Fetch-Site`` says ``cross-site``, is refused before anything else (see
:func:`is_cross_origin`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner

if TYPE_CHECKING:
    from collections.abc import Callable

COOKIE_NAME = "csrf"
"""The cookie's name on plain HTTP."""

SECURE_COOKIE_NAME = f"__Host-{COOKIE_NAME}"
"""The cookie's name over HTTPS: only a secure origin can set it, for its own host only."""

TOKEN_FIELD = "csrf_token"  # noqa: S105 - a field name, not a secret
"""The form field holding the token."""

DEFAULT_MAX_AGE = 2 * 60 * 60
"""Seconds a form's token is accepted for, by default."""

MIN_SECRET_BYTES = 32
"""The shortest secret accepted: 256 bits, HMAC-SHA256's key strength."""

_COOKIE_SALT = b"frontend-web.csrf-cookie"
_TOKEN_SALT = b"frontend-web.csrf-token\n"
_MAX_COOKIE_LENGTH = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}


def cookie_name(*, https: bool) -> str:
    """Return the cookie's name for a page served over HTTPS or plain HTTP.

    Args:
        https: Whether the page's public address is ``https://``.

    Returns:
        :data:`SECURE_COOKIE_NAME` over HTTPS, else :data:`COOKIE_NAME`.
    """
    return SECURE_COOKIE_NAME if https else COOKIE_NAME


class Verdict(enum.Enum):
    """What a submitted form's token turned out to be."""

    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


class _ClockedSigner(TimestampSigner):
    """itsdangerous's timestamp signer, reading the time from a given clock."""

    def __init__(self, secret: bytes, salt: bytes, clock: Callable[[], float]) -> None:
        super().__init__(secret, salt=salt, key_derivation="hmac", digest_method=hashlib.sha256)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class CsrfGuard:
    """Mints the cookies and issues and checks the tokens of one app."""

    def __init__(
        self,
        secret: bytes,
        *,
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Use ``secret`` to sign cookies and tokens.

        Args:
            secret: The signing key; every process that checks a token must share it.
            max_age: The most seconds a token is accepted for after it was issued.
            clock: The wall clock, in seconds since the epoch, that dates tokens;
                every process that checks a token must agree with it to the second.

        Raises:
            ValueError: If ``secret`` is shorter than 32 bytes, or ``max_age`` is not positive.
        """
        if len(secret) < MIN_SECRET_BYTES:
            msg = f"the CSRF secret must have at least {MIN_SECRET_BYTES} bytes"
            raise ValueError(msg)
        if max_age < 1:
            msg = "the CSRF tokens' maximum age must be at least one second"
            raise ValueError(msg)
        self._secret = secret
        self._max_age = max_age
        self._clock = clock
        self._cookies = Signer(
            secret, salt=_COOKIE_SALT, key_derivation="hmac", digest_method=hashlib.sha256
        )

    def __repr__(self) -> str:
        """Describe the guard without its secret."""
        return f"CsrfGuard(max_age={self._max_age})"

    @property
    def max_age(self) -> int:
        """The most seconds a token is accepted for after it was issued."""
        return self._max_age

    def new_cookie(self) -> str:
        """Return a fresh cookie value: a random nonce, signed by this app."""
        return self._cookies.sign(secrets.token_urlsafe(32)).decode()

    def cookie_value(self, current: str | None) -> str:
        """Return the browser's cookie value: ``current`` if this app signed it, else a new one.

        Keeping the value a browser already holds keeps valid the forms it has
        open in other tabs; a value the server did not mint is never adopted.

        Args:
            current: The value of the browser's cookie, if it sent one.

        Returns:
            The value to sign tokens with and to set in the cookie.
        """
        if current is not None and self._nonce(current) is not None:
            return current
        return self.new_cookie()

    def token(self, cookie: str, idempotency_key: str) -> str:
        """Return the token of a form, dated now.

        Args:
            cookie: The browser's cookie value, as :meth:`cookie_value` returned it.
            idempotency_key: The form's idempotency key.

        Returns:
            The token: the key, the time of issue and the signature, dot-separated.

        Raises:
            ValueError: If ``cookie`` was not minted by this app.
        """
        nonce = self._nonce(cookie)
        if nonce is None:
            msg = "the cookie was not minted by this app"
            raise ValueError(msg)
        return self._tokens(nonce).sign(idempotency_key).decode()

    def check(self, cookie: str | None, idempotency_key: str, token: str) -> Verdict:
        """Tell whether a submitted form's token is valid for its cookie and idempotency key.

        Args:
            cookie: The browser's cookie value, if it sent one.
            idempotency_key: The form's idempotency key as submitted.
            token: The form's token as submitted.

        Returns:
            :attr:`Verdict.VALID` if this app issued the token for this browser
            and this key within the maximum age; :attr:`Verdict.EXPIRED` if it
            did, but longer ago (or, by this clock, in the future);
            :attr:`Verdict.INVALID` otherwise.
        """
        nonce = self._nonce(cookie)
        if nonce is None:
            return Verdict.INVALID
        try:
            signed_key = self._tokens(nonce).unsign(token, max_age=self._max_age)
        except SignatureExpired as expired:
            if not _same(expired.payload, idempotency_key):
                return Verdict.INVALID
            return Verdict.EXPIRED
        except BadSignature:
            return Verdict.INVALID
        return Verdict.VALID if _same(signed_key, idempotency_key) else Verdict.INVALID

    def _nonce(self, cookie: str | None) -> bytes | None:
        if cookie is None or len(cookie) > _MAX_COOKIE_LENGTH:
            return None
        try:
            return self._cookies.unsign(cookie)
        except BadSignature:
            return None

    def _tokens(self, nonce: bytes) -> _ClockedSigner:
        return _ClockedSigner(self._secret, _TOKEN_SALT + nonce, self._clock)


def _same(signed: object, submitted: str) -> bool:
    return isinstance(signed, bytes) and hmac.compare_digest(signed, submitted.encode())


def is_cross_origin(*, origin: str | None, fetch_site: str | None, own_origin: str) -> bool:
    """Tell whether a request's headers show that another site's page sent it.

    Browsers send ``Origin`` with every ``POST`` and ``Sec-Fetch-Site`` with every
    request to a secure or local address; a client that sends neither (an old
    browser, curl) is judged on its token alone.

    Args:
        origin: The request's ``Origin`` header, if any.
        fetch_site: The request's ``Sec-Fetch-Site`` header, if any.
        own_origin: The origin the page is served from, ``scheme://host[:port]``.

    Returns:
        Whether ``Sec-Fetch-Site`` is ``cross-site``, or ``Origin`` is present
        and is not ``own_origin``. An opaque ``Origin: null`` counts as another
        origin, unless ``Sec-Fetch-Site`` says ``same-origin``: browsers send
        ``null`` for a sandboxed frame, but also for a page's own form when its
        referrer policy is ``no-referrer``.
    """
    site = fetch_site.strip().lower() if fetch_site is not None else None
    if site == "cross-site":
        return True
    if origin is None:
        return False
    if origin.strip() == "null" and site == "same-origin":
        # The browser's own word that the page is this origin's, its Origin hidden
        # by a referrer policy (no-referrer, say, added by a proxy).
        return False
    key = _origin_key(origin)
    return key is None or key != _origin_key(own_origin)


def _origin_key(value: str) -> tuple[str, str, int] | None:
    # Scheme and host lower-cased, the port made explicit, so that equal origins
    # written differently (":80" on http, an upper-case host) compare equal.
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    default_port = _DEFAULT_PORTS.get(parts.scheme)
    if default_port is None or not parts.hostname or parts.username is not None:
        return None
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        return None
    return parts.scheme, parts.hostname, default_port if port is None else port
