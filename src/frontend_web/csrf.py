"""CSRF protection of the forms: a signed double-submit cookie.

Each browser gets a random value in an HttpOnly cookie. Each rendered form
carries a token, the HMAC of that value and of the form's idempotency key
under the app's secret. A submit is accepted only when its token matches the
cookie it came with: another site can make a browser send the cookie, but
cannot read it or the page, so it cannot forge the token. Binding the
idempotency key too means that frontend-web forwards to user-service only keys
that it issued itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

COOKIE_NAME = "csrf"
"""The cookie holding the browser's random value."""

TOKEN_FIELD = "csrf_token"  # noqa: S105 - a field name, not a secret
"""The form field holding the token."""

_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


class CsrfGuard:
    """Issues and checks the CSRF tokens of one app."""

    def __init__(self, secret: bytes) -> None:
        """Use ``secret`` to sign tokens.

        Args:
            secret: The signing key; every process that checks a token must share it.

        Raises:
            ValueError: If ``secret`` is shorter than 32 bytes.
        """
        if len(secret) < 32:  # noqa: PLR2004 - 256 bits, HMAC-SHA256's key strength
            msg = "the CSRF secret must have at least 32 bytes"
            raise ValueError(msg)
        self._secret = secret

    @staticmethod
    def cookie_value(current: str | None) -> str:
        """Return the browser's cookie value: ``current`` if well formed, else a new one.

        Keeping the value a browser already holds keeps valid the forms it has
        open in other tabs.

        Args:
            current: The value of the browser's cookie, if it sent one.

        Returns:
            The value to sign tokens with and to set in the cookie.
        """
        if current is not None and _COOKIE_VALUE.fullmatch(current):
            return current
        return secrets.token_urlsafe(32)

    def token(self, cookie: str, idempotency_key: str) -> str:
        """Return the token of a form.

        Args:
            cookie: The browser's cookie value.
            idempotency_key: The form's idempotency key.

        Returns:
            The token, 64 hexadecimal digits.
        """
        message = f"{cookie}\n{idempotency_key}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def is_valid(self, cookie: str | None, idempotency_key: str, token: str) -> bool:
        """Tell whether a submitted form's token matches its cookie and idempotency key.

        Args:
            cookie: The browser's cookie value, if it sent one.
            idempotency_key: The form's idempotency key as submitted.
            token: The form's token as submitted.

        Returns:
            Whether the form was rendered by an app with this secret for this browser.
        """
        if cookie is None or not _COOKIE_VALUE.fullmatch(cookie):
            return False
        return hmac.compare_digest(self.token(cookie, idempotency_key).encode(), token.encode())
