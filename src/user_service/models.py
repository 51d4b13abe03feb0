"""The JSON bodies of user-service's HTTP API."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - pydantic reads the annotation at runtime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from usernames import MAX_USERNAME_LENGTH, canonical_username

MAX_PASSWORD_LENGTH = 1024


class CreateAccountRequest(BaseModel):
    """Body of ``POST /accounts``, sent by frontend-web.

    The username is canonicalised here, at the edge (RFC 8265
    UsernameCaseMapped), so everything behind it sees one form per user.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    username: Annotated[
        str,
        Field(min_length=1, max_length=MAX_USERNAME_LENGTH),
        AfterValidator(canonical_username),
    ]
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH, repr=False)


class CreateAccountResponse(BaseModel):
    """Body of a ``201`` answer to ``POST /accounts``."""

    id: int
    username: str
    status: str = "created"


class AccountResponse(BaseModel):
    """Body of a ``200`` answer to ``GET /accounts/{id}``."""

    id: int
    username: str
    status: Literal["active"] = "active"
    created_at: datetime


class ErrorCode(StrEnum):
    """What an error answer of user-service means, for a program to read.

    Every error body carries one, beside ``detail``; a client tells answers
    that share a status apart by it (the two ``409`` s, the ``503`` s) and
    never by ``detail``, which is for people and may change.
    """

    INVALID_CREDENTIALS = "invalid_credentials"
    USERNAME_TAKEN = "username_taken"
    IDEMPOTENCY_KEY_IN_PROGRESS = "idempotency_key_in_progress"
    IDEMPOTENCY_KEY_MISMATCH = "idempotency_key_mismatch"
    INVALID_REQUEST = "invalid_request"
    BODY_TOO_LARGE = "body_too_large"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    OVERLOADED = "overloaded"
    AUTH_UNAVAILABLE = "auth_unavailable"
    AUTH_TIMEOUT = "auth_timeout"
    AUTH_BAD_RESPONSE = "auth_bad_response"
    STORE_UNAVAILABLE = "store_unavailable"
    CLIENT_CLOSED_REQUEST = "client_closed_request"


class ErrorResponse(BaseModel):
    """Body of an error answer.

    Attributes:
        detail: For a person to read.
        code: For a program to read: what went wrong, such as ``username_taken``
            or ``overloaded`` (a ``503`` that ``Retry-After`` will cure).
    """

    detail: str
    code: ErrorCode


class FieldProblem(BaseModel):
    """One part of a request that user-service refused.

    Attributes:
        loc: Where it is: the request part (``body``, ``header``, ``path``),
            then the field, such as ``["body", "username"]``.
        msg: What is wrong with it; never the value sent.
        type: The kind of error, such as ``missing`` or ``string_too_long``.
    """

    loc: list[str | int]
    msg: str
    type: str


class InvalidRequestResponse(BaseModel):
    """Body of a ``422`` answer to a malformed request.

    Attributes:
        detail: Each refused part of the request.
        code: Always ``invalid_request``.
    """

    detail: list[FieldProblem]
    code: Literal[ErrorCode.INVALID_REQUEST]
