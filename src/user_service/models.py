"""The JSON bodies of user-service's HTTP API."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - pydantic reads the annotation at runtime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from servicekit.openapi import USERNAME_DESCRIPTION, USERNAME_FORMAT
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
        Field(
            min_length=1,
            max_length=MAX_USERNAME_LENGTH,
            description=USERNAME_DESCRIPTION,
            examples=["alice"],
            json_schema_extra={"format": USERNAME_FORMAT},
        ),
        AfterValidator(canonical_username),
    ]
    password: str = Field(
        min_length=1,
        max_length=MAX_PASSWORD_LENGTH,
        repr=False,
        description="1 to 1,024 characters, sent to auth-service and never stored.",
        examples=["correct-horse-battery-staple"],
    )


class CreateAccountResponse(BaseModel):
    """Body of a ``201`` answer to ``POST /accounts``."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    id: int = Field(description="The account's id, for `GET /accounts/{account_id}`.")
    username: str = Field(description="The canonical username.")
    status: Literal["created"] = "created"


class AccountResponse(BaseModel):
    """Body of a ``200`` answer to ``GET /accounts/{id}``."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    id: int
    username: str = Field(description="The canonical username.")
    status: Literal["active"] = "active"
    created_at: datetime = Field(description="When the account was created, in UTC.")


class Health(BaseModel):
    """Body of a ``200`` answer to ``GET /livez`` and ``GET /readyz``."""

    status: Literal["ok"]


class ErrorCode(StrEnum):
    """What an error answer of user-service means, for a program to read.

    Every error body carries one, beside ``detail``; a client tells answers
    that share a status apart by it (the two ``409`` s, the ``503`` s) and
    never by ``detail``, which is for people and may change. ``invalid_token``,
    ``body_too_large`` and ``shutting_down`` come from :mod:`servicekit`'s
    middleware, in front of the routes.
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
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a code, not a secret)
    SHUTTING_DOWN = "shutting_down"


class ErrorResponse(BaseModel):
    """Body of an error answer.

    Attributes:
        detail: For a person to read.
        code: For a program to read: what went wrong, such as ``username_taken``
            or ``overloaded`` (a ``503`` that ``Retry-After`` will cure).
    """

    detail: str = Field(description="For a person to read; its wording may change.")
    code: ErrorCode = Field(description="For a program to read.")


class CredentialsOrTokenRefused(ErrorResponse):
    """``401``: auth-service said the password is not the user's, or the client token is not valid.

    Only the second carries ``WWW-Authenticate``.
    """

    code: Literal[ErrorCode.INVALID_CREDENTIALS, ErrorCode.INVALID_TOKEN]


class TokenRefused(ErrorResponse):
    """``401``: no client token, or one that no registered client holds."""

    code: Literal[ErrorCode.INVALID_TOKEN]


class NotFound(ErrorResponse):
    """``404``: there is no such account."""

    code: Literal[ErrorCode.NOT_FOUND]


class Conflict(ErrorResponse):
    """``409``: the username is taken, or a request with this ``Idempotency-Key`` is unfinished."""

    code: Literal[ErrorCode.USERNAME_TAKEN, ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS]


class BodyTooLarge(ErrorResponse):
    """``413``: the body is larger than the service reads; refused before it is read."""

    code: Literal[ErrorCode.BODY_TOO_LARGE]


class IdempotencyKeyMismatch(ErrorResponse):
    """``422``: the ``Idempotency-Key`` was used with another username."""

    code: Literal[ErrorCode.IDEMPOTENCY_KEY_MISMATCH]


class TooManyAttempts(ErrorResponse):
    """``429``: auth-service has locked the account out for a while; see ``Retry-After``."""

    code: Literal[ErrorCode.TOO_MANY_ATTEMPTS]


class AuthBadResponse(ErrorResponse):
    """``502``: auth-service answered without a verdict; no account was created."""

    code: Literal[ErrorCode.AUTH_BAD_RESPONSE]


class SignUpUnavailable(ErrorResponse):
    """``503``, with ``Retry-After``: no account was created; a retry may succeed.

    ``overloaded``: no credential check can be had in time now.
    ``auth_unavailable``: auth-service cannot be reached (or refuses
    user-service's own token). ``store_unavailable``: the account database
    (or the client tokens in it) cannot be used. ``shutting_down``: the
    service stopped while the request was under way.
    """

    code: Literal[
        ErrorCode.OVERLOADED,
        ErrorCode.AUTH_UNAVAILABLE,
        ErrorCode.STORE_UNAVAILABLE,
        ErrorCode.SHUTTING_DOWN,
    ]


class StoreUnavailable(ErrorResponse):
    """``503``, with ``Retry-After``: the account database cannot be used, or the service stops."""

    code: Literal[ErrorCode.STORE_UNAVAILABLE, ErrorCode.SHUTTING_DOWN]


class ShuttingDown(ErrorResponse):
    """``503``, with ``Retry-After``: the service stopped while the request was under way."""

    code: Literal[ErrorCode.SHUTTING_DOWN]


class AuthTimeout(ErrorResponse):
    """``504``: auth-service did not answer in time; no account was created."""

    code: Literal[ErrorCode.AUTH_TIMEOUT]


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
