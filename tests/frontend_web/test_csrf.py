"""The CSRF guard on its own: tokens bound to the cookie, the form's key and the secret."""

from __future__ import annotations

import pytest

from frontend_web.csrf import CsrfGuard
from frontend_web.signup import Submission

SECRET = b"s" * 32
KEY = "k" * 43


def test_token_is_accepted_with_its_cookie_and_key() -> None:
    guard = CsrfGuard(SECRET)
    cookie = guard.cookie_value(None)

    assert guard.is_valid(cookie, KEY, guard.token(cookie, KEY))


@pytest.mark.parametrize(
    ("cookie", "key", "secret"),
    [
        ("c" * 43, KEY, SECRET),  # another browser
        (None, KEY.upper(), SECRET),  # another form
        (None, KEY, b"t" * 32),  # another app without a shared secret
    ],
)
def test_token_is_refused_with_anything_else(cookie: str | None, key: str, secret: bytes) -> None:
    guard = CsrfGuard(SECRET)
    own_cookie = guard.cookie_value(None)
    token = guard.token(own_cookie, KEY)

    assert not CsrfGuard(secret).is_valid(cookie or own_cookie, key, token)


def test_missing_or_malformed_cookie_is_refused() -> None:
    guard = CsrfGuard(SECRET)

    assert not guard.is_valid(None, KEY, guard.token("x", KEY))
    assert not guard.is_valid("x", KEY, guard.token("x", KEY))


def test_well_formed_cookie_is_kept_and_anything_else_replaced() -> None:
    existing = CsrfGuard.cookie_value(None)

    assert CsrfGuard.cookie_value(existing) == existing
    assert CsrfGuard.cookie_value("short") != "short"
    assert CsrfGuard.cookie_value(None) != existing


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        CsrfGuard(b"s" * 31)


def test_submission_repr_hides_the_password_and_token() -> None:
    submission = Submission("alice", "pw-7f3c9e-never-echo-me", KEY, "token-value")

    assert "pw-7f3c9e" not in repr(submission)
    assert "token-value" not in repr(submission)
