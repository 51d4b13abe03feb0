"""The bodies auth-service reads and answers, and the codes of its error answers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from auth_service.passwords import MAX_PASSWORD_LENGTH
from usernames import InvalidUsernameError, canonical_username

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

    username: Annotated[str, AfterValidator(_canonical)]
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH, repr=False)]


class ValidationAnswer(BaseModel):
    """Whether the credentials are valid, and for whom.

    Attributes:
        valid: Whether the password is the user's. ``false`` alike for an
            unknown user, a wrong password and a password that cannot be
            normalised.
        subject: The canonical username.
    """

    valid: bool
    subject: str


class ErrorCode(StrEnum):
    """What an error answer of auth-service means, for a program to read."""

    INVALID_REQUEST = "invalid_request"
    BODY_TOO_LARGE = "body_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    LOCKED_OUT = "locked_out"
    OVERLOADED = "overloaded"
    STORE_UNAVAILABLE = "store_unavailable"


class Problem(BaseModel):
    """Why a request was not answered.

    Attributes:
        detail: For a person to read.
        code: For a program to read: what went wrong, such as ``locked_out``
            or ``overloaded`` (a ``503`` that ``Retry-After`` will cure).
    """

    detail: str
    code: ErrorCode


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
    """The answer of ``/livez`` and ``/readyz``.

    Attributes:
        status: ``ok``, or ``unavailable`` when not ready.
    """

    status: Literal["ok", "unavailable"]
