"""The JSON bodies of user-service's HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_USERNAME_LENGTH = 64
MAX_PASSWORD_LENGTH = 1024


class CreateAccountRequest(BaseModel):
    """Body of ``POST /accounts``, sent by frontend-web."""

    model_config = ConfigDict(hide_input_in_errors=True)

    username: str = Field(min_length=1, max_length=MAX_USERNAME_LENGTH)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class CreateAccountResponse(BaseModel):
    """Body of a ``201`` answer to ``POST /accounts``."""

    id: int
    username: str
    status: str = "created"


class ErrorResponse(BaseModel):
    """Body of an error answer."""

    detail: str
