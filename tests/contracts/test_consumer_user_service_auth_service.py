"""Consumer tests of the pact user-service -> auth-service, driving the real AuthClient.

user-service reads only ``valid``, so that is all the pact asks of auth-service;
of a 429 or a 503 it reads only the status and ``Retry-After``; of a 401 only
the status and that it challenges for a bearer token. Every request carries
user-service's client token and the time budget user-service gives
auth-service. The client sends a real token, made for the test; the pact
matches it by its form and shows only an example.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple

import pytest
from pact import Pact, match

from servicekit.client_tokens import new_token
from servicekit.deadlines import BUDGET_HEADER
from tests.contracts.committed_pacts import check_descriptions, check_interaction
from tests.contracts.credentials import (
    AUTH_SERVICE_CHALLENGE,
    AUTHORIZATION,
    BUDGET_MS,
    CHALLENGE_PATTERN,
    LOCKED_OUT_PASSWORD,
    OVERLOADED_PASSWORD,
    PASSWORD,
    REVOKED_TOKEN_PASSWORD,
    TOKEN_PATTERN,
    USERNAME,
    WRONG_PASSWORD,
)
from tests.support.log_scan import register_secret
from user_service.auth_client import (
    AuthClient,
    AuthClientRejectedError,
    AuthServiceOverloadedError,
    AuthServiceRateLimitedError,
)

if TYPE_CHECKING:
    from pathlib import Path

    from pact.interaction import HttpInteraction

CONSUMER, PROVIDER = "user-service", "auth-service"


class Validation(NamedTuple):
    state: str
    password: str
    valid: bool

    @property
    def description(self) -> str:
        return f"Credential validation for {self.state}"


LOCKED_OUT = "Credential validation while alice is locked out"
OVERLOADED = "Credential validation while auth-service is overloaded"
REVOKED = "Credential validation with a revoked client token"

VALIDATIONS = [
    Validation("user credentials are valid", PASSWORD, valid=True),
    Validation("user credentials are invalid", WRONG_PASSWORD, valid=False),
]


async def _validate(base_url: str, password: str) -> bool:
    async with AuthClient(base_url, token=register_secret(new_token())) as client:
        return await client.validate_credentials(USERNAME, password)


def _validation_request(pact: Pact, description: str, state: str, password: str) -> HttpInteraction:
    return (
        pact.upon_receiving(description)
        .given(state)
        .with_request("POST", "/auth/validate")
        .with_header("Authorization", match.regex(AUTHORIZATION, regex=TOKEN_PATTERN))
        .with_header(BUDGET_HEADER, match.regex(BUDGET_MS, regex=r"\d+"))
        .with_body({"username": USERNAME, "password": password}, "application/json")
    )


@pytest.mark.contract
@pytest.mark.parametrize("case", VALIDATIONS, ids=lambda case: case.state)
def test_auth_client_reads_the_verdict(case: Validation, tmp_path: Path) -> None:
    pact = Pact(CONSUMER, PROVIDER)
    (
        _validation_request(pact, case.description, case.state, case.password)
        .will_respond_with(200)
        .with_body({"valid": case.valid}, "application/json")
    )
    with pact.serve(addr="127.0.0.1") as server:
        assert asyncio.run(_validate(str(server.url), case.password)) is case.valid
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


@pytest.mark.contract
def test_auth_client_reports_lockout_from_429(tmp_path: Path) -> None:
    pact = Pact(CONSUMER, PROVIDER)
    (
        _validation_request(
            pact, LOCKED_OUT, "alice has too many failed attempts", LOCKED_OUT_PASSWORD
        )
        .will_respond_with(429)
        .with_header("Retry-After", match.regex("900", regex=r"\d+"))
    )
    with pact.serve(addr="127.0.0.1") as server:
        with pytest.raises(AuthServiceRateLimitedError) as raised:
            asyncio.run(_validate(str(server.url), LOCKED_OUT_PASSWORD))
        assert raised.value.retry_after == 900
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


@pytest.mark.contract
def test_auth_client_reports_overload_from_503(tmp_path: Path) -> None:
    pact = Pact(CONSUMER, PROVIDER)
    (
        _validation_request(pact, OVERLOADED, "auth-service is overloaded", OVERLOADED_PASSWORD)
        .will_respond_with(503)
        .with_header("Retry-After", match.regex("1", regex=r"\d+"))
    )
    with pact.serve(addr="127.0.0.1") as server:
        with pytest.raises(AuthServiceOverloadedError) as raised:
            asyncio.run(_validate(str(server.url), OVERLOADED_PASSWORD))
        assert raised.value.retry_after == 1
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


@pytest.mark.contract
def test_auth_client_reports_a_refused_token_from_401(tmp_path: Path) -> None:
    pact = Pact(CONSUMER, PROVIDER)
    (
        _validation_request(
            pact, REVOKED, "user-service's client token is revoked", REVOKED_TOKEN_PASSWORD
        )
        .will_respond_with(401)
        .with_header(
            "WWW-Authenticate", match.regex(AUTH_SERVICE_CHALLENGE, regex=CHALLENGE_PATTERN)
        )
    )
    with pact.serve(addr="127.0.0.1") as server:
        with pytest.raises(AuthClientRejectedError):
            asyncio.run(_validate(str(server.url), REVOKED_TOKEN_PASSWORD))
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


@pytest.mark.contract
def test_committed_pact_holds_exactly_these_interactions() -> None:
    descriptions = {case.description for case in VALIDATIONS} | {LOCKED_OUT, OVERLOADED, REVOKED}
    check_descriptions(CONSUMER, PROVIDER, descriptions)
