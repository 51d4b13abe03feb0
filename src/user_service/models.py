"""The JSON bodies of user-service's HTTP API."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - pydantic reads the annotation at runtime
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


class ErrorResponse(BaseModel):
    """Body of an error answer.

    Attributes:
        detail: For a person to read.
        code: For a program to read, when the status alone does not say it:
            ``overloaded`` for a ``503`` that ``Retry-After`` will cure.
    """

    detail: str
    code: str | None = None
