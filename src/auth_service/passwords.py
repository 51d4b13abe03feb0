"""Passwords: the RFC 8265 OpaqueString rule, and argon2id hashing and checking.

Everything here is synchronous and CPU-bound; the service runs it in the
bounded pool of :mod:`auth_service.hash_pool`, the command line directly.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from precis_i18n import get_profile

if TYPE_CHECKING:
    from collections.abc import Callable

    from precis_i18n.profile import Profile

    from auth_service.settings import Settings

MAX_PASSWORD_LENGTH = 1024
"""The longest password accepted, in characters as sent; longer ones are refused, never cut."""


class InvalidPasswordError(ValueError):
    """The password cannot be used; the message says why and never holds the password."""


@cache
def _opaque_string() -> Profile:
    return get_profile("OpaqueString")


def normalise_password(password: str) -> str:
    """Return the form of ``password`` that is hashed: RFC 8265 OpaqueString.

    The profile maps every non-ASCII space to U+0020 and applies Unicode NFC,
    so ``é`` typed as one code point or as ``e`` and a combining accent, or a
    space typed as U+3000, give the same password.

    Args:
        password: The password as sent.

    Returns:
        The normalised password.

    Raises:
        InvalidPasswordError: If it is empty, longer than
            ``MAX_PASSWORD_LENGTH`` characters, or holds a character the
            profile disallows (control characters, unassigned code points...).
    """
    if not password:
        msg = "the password is empty"
        raise InvalidPasswordError(msg)
    if len(password) > MAX_PASSWORD_LENGTH:
        msg = f"the password has more than {MAX_PASSWORD_LENGTH} characters"
        raise InvalidPasswordError(msg)
    try:
        normalised: str = _opaque_string().enforce(password)
    except UnicodeError as error:
        reason = str(getattr(error, "reason", "")).rpartition("/")[2] or "disallowed"
        msg = f"the password has a character that is not allowed ({reason})"
        raise InvalidPasswordError(msg) from None
    return normalised


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of checking a password against a stored hash.

    Attributes:
        matched: Whether the password is the one hashed.
        new_hash: A hash of the password with the current parameters, when it
            matched a hash made with other ones; else ``None``.
    """

    matched: bool
    new_hash: str | None = None


_logger = logging.getLogger(__name__)
_NO_MATCH = CheckResult(matched=False)
# Verified against the dummy hash when the password cannot be normalised; its
# length hardly matters, since argon2id's cost does not depend on it.
_PLACEHOLDER = "placeholder"


class PasswordHashing:
    """argon2id with the parameters in the settings. Safe to use from many threads.

    Passwords are normalised with :func:`normalise_password` before they are
    hashed or checked, and never stored, logged or returned.
    """

    def __init__(
        self, settings: Settings, *, on_operation: Callable[[str], None] | None = None
    ) -> None:
        """Prepare argon2id with the parameters in ``settings``.

        Args:
            settings: Gives ``argon2_time_cost``, ``argon2_memory_cost`` and
                ``argon2_parallelism``.
            on_operation: Called with ``"hash"`` or ``"verify"`` after each
                argon2id computation, for metrics.
        """
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._on_operation = on_operation
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def hash(self, password: str) -> str:
        """Return the argon2id hash of the normalised ``password``.

        Raises:
            InvalidPasswordError: If the password is refused by :func:`normalise_password`.
        """
        return self._hash(normalise_password(password))

    def check(self, password_hash: str | None, password: str) -> CheckResult:
        """Check ``password`` against ``password_hash``, at the same cost whatever the outcome.

        When there is no hash (an unknown user) or the password cannot be
        normalised (so it can match nothing), a dummy hash with the current
        parameters is verified instead, so that the answer takes as long as
        for a wrong password.

        Args:
            password_hash: The stored hash, or ``None`` for an unknown user.
            password: The password as sent.

        Returns:
            Whether it matched, and a new hash if the stored one is outdated.
        """
        try:
            normalised = normalise_password(password)
        except InvalidPasswordError:
            normalised = None
        if password_hash is None or normalised is None:
            self._verify(self.dummy_hash(), _PLACEHOLDER if normalised is None else normalised)
            return _NO_MATCH
        if not self._verify(password_hash, normalised):
            return _NO_MATCH
        if self._hasher.check_needs_rehash(password_hash):
            return CheckResult(matched=True, new_hash=self._hash(normalised))
        return CheckResult(matched=True)

    def dummy_hash(self) -> str:
        """Return the hash verified for unknown users, made on first use with a random password."""
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hash(secrets.token_urlsafe(16))
            return self._dummy_hash

    def _hash(self, normalised: str) -> str:
        password_hash = self._hasher.hash(normalised)
        self._count("hash")
        return password_hash

    def _verify(self, password_hash: str, normalised: str) -> bool:
        matched: bool
        try:
            matched = self._hasher.verify(password_hash, normalised)
        except VerificationError:
            matched = False
        except InvalidHashError:
            _logger.warning("a stored password hash is not an argon2 hash; it matches nothing")
            matched = False
        self._count("verify")
        return matched

    def _count(self, operation: str) -> None:
        if self._on_operation is not None:
            self._on_operation(operation)
