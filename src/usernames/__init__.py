"""The username rule that user-service and auth-service share.

A username is canonicalised once, at the edge, with the PRECIS
UsernameCaseMapped profile of RFC 8265: ``alice``, ``ALICE`` and their
fullwidth form are the same user. Both services import this package, so they
cannot disagree on who a user is.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from precis_i18n import get_profile

if TYPE_CHECKING:
    from precis_i18n.profile import Profile

MAX_USERNAME_LENGTH = 64


class InvalidUsernameError(ValueError):
    """The username cannot be used; the message says why, for a person to read."""


@cache
def _profile() -> Profile:
    return get_profile("UsernameCaseMapped")


def canonical_username(username: str) -> str:
    """Return the canonical form of ``username``.

    Args:
        username: A username as a person typed it.

    Returns:
        The form to store and compare.

    Raises:
        InvalidUsernameError: If it is empty, longer than ``MAX_USERNAME_LENGTH``
            characters before or after mapping, or holds a character the
            profile disallows (spaces, symbols, control characters, ...).
    """
    if not username:
        msg = "must not be empty"
        raise InvalidUsernameError(msg)
    if len(username) > MAX_USERNAME_LENGTH:
        msg = f"must have at most {MAX_USERNAME_LENGTH} characters"
        raise InvalidUsernameError(msg)
    try:
        canonical: str = _profile().enforce(username)
    except UnicodeError as error:
        reason = str(getattr(error, "reason", "")).rpartition("/")[2] or "disallowed"
        msg = f"has a character that is not allowed in a username ({reason})"
        raise InvalidUsernameError(msg) from error
    if len(canonical) > MAX_USERNAME_LENGTH:
        msg = f"must have at most {MAX_USERNAME_LENGTH} characters"
        raise InvalidUsernameError(msg)
    return canonical
