"""The bodies auth-service reads and answers, and the codes of its error answers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from auth_service.passwords import MAX_PASSWORD_LENGTH
from servicekit.openapi import USERNAME_DESCRIPTION, USERNAME_FORMAT
from usernames import MAX_USERNAME_LENGTH, InvalidUsernameError, canonical_username

MAX_BODY_BYTES = 16 * 1024
"""The largest request body: room for 1,024 astral characters escaped as JSON, and a username."""


def _canonical(username: str) -> str:
    try:
        return canonical_username(username)
    except InvalidUsernameError as error:
        msg = f"the username {error}"
        raise ValueError(msg) from None


class Credentials(BaseModel):
    """A username and password to check.

    Attributes:
        username: Canonicalised on arrival (PRECIS UsernameCaseMapped).
        password: At most ``MAX_PASSWORD_LENGTH`` characters, never cut;
            normalised (OpaqueString) when checked.
    """

    username: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_USERNAME_LENGTH,
            description=USERNAME_DESCRIPTION,
            examples=["alice"],
            json_schema_extra={"format": USERNAME_FORMAT},
        ),
        AfterValidator(_canonical),
    ]
    password: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_PASSWORD_LENGTH,
            repr=False,
            description=f"1 to {MAX_PASSWORD_LENGTH:,} characters, never cut; one that cannot "
            "be normalised (OpaqueString) is checked as wrong.",
            examples=["correct-horse-battery-staple"],
        ),
    ]


class ValidationAnswer(BaseModel):
    """Whether the credentials are valid, and for whom.

    Attributes:
        valid: Whether the password is the user's. ``false`` alike for an
            unknown user, a wrong password and a password that cannot be
            normalised.
        subject: The canonical username.
    """

    valid: bool = Field(description="Whether the password is the user's.")
    subject: str = Field(description="The canonical username.")


class ErrorCode(StrEnum):
    """What an error answer of auth-service means, for a program to read.

    ``invalid_token``, ``body_too_large`` and ``shutting_down`` (and the
    ``store_unavailable`` of a client token that cannot be checked) come from
    :mod:`servicekit`'s middleware, in front of the routes.
    """

    INVALID_REQUEST = "invalid_request"
    BODY_TOO_LARGE = "body_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    LOCKED_OUT = "locked_out"
    OVERLOADED = "overloaded"
    STORE_UNAVAILABLE = "store_unavailable"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a code, not a secret)
    SHUTTING_DOWN = "shutting_down"


class Problem(BaseModel):
    """Why a request was not answered.

    Attributes:
        detail: For a person to read.
        code: For a program to read: what went wrong, such as ``locked_out``
            or ``overloaded`` (a ``503`` that ``Retry-After`` will cure).
    """

    detail: str = Field(description="For a person to read; its wording may change.")
    code: ErrorCode = Field(description="For a program to read.")


class TokenRefused(Problem):
    """``401``: no client token, or one that no registered client holds."""

    code: Literal[ErrorCode.INVALID_TOKEN]


class BodyTooLarge(Problem):
    """``413``: the body is larger than the service reads; refused before it is read."""

    code: Literal[ErrorCode.BODY_TOO_LARGE]


class LockedOut(Problem):
    """``429``, with ``Retry-After``: too many failed attempts for this username."""

    code: Literal[ErrorCode.LOCKED_OUT]


class CheckUnavailable(Problem):
    """``503``: the check was not made; a retry may succeed.

    ``overloaded`` (with ``Retry-After``): no check can be had in time now.
    ``store_unavailable``: the credential database (or the client tokens in
    it, then with ``Retry-After``) cannot be used. ``shutting_down`` (with
    ``Retry-After``): the service stopped while the request was under way.
    """

    code: Literal[ErrorCode.OVERLOADED, ErrorCode.STORE_UNAVAILABLE, ErrorCode.SHUTTING_DOWN]


class ShuttingDown(Problem):
    """``503``, with ``Retry-After``: the service stopped while the request was under way."""

    code: Literal[ErrorCode.SHUTTING_DOWN]


class FieldProblem(BaseModel):
    """One part of a request that auth-service refused.

    Attributes:
        loc: Where it is, such as ``["body", "username"]``.
        msg: What is wrong with it; never the value sent.
        type: The kind of error, such as ``missing``.
    """

    loc: list[str | int]
    msg: str
    type: str


class InvalidRequestProblem(BaseModel):
    """Why a malformed request was refused (``422``).

    Attributes:
        detail: Each refused part of the request.
        code: Always ``invalid_request``.
    """

    detail: list[FieldProblem]
    code: Literal[ErrorCode.INVALID_REQUEST]


class Health(BaseModel):
    """The ``200`` answer of ``/livez`` and ``/readyz``.

    Attributes:
        status: ``ok``.
    """

    status: Literal["ok"]


class NotReady(BaseModel):
    """The ``503`` answer of ``/readyz`` while the database cannot be used.

    Attributes:
        status: ``unavailable``.
    """

    status: Literal["unavailable"]
