"""Consumer tests of the pact user-service -> auth-service, driving the real AuthClient.

user-service reads only ``valid``, so that is all the pact asks of auth-service.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple

import pytest
from pact import Pact

from tests.contracts.committed_pacts import check_descriptions, check_interaction
from user_service.auth_client import AuthClient

if TYPE_CHECKING:
    from pathlib import Path

CONSUMER, PROVIDER = "user-service", "auth-service"


class Validation(NamedTuple):
    state: str
    password: str
    valid: bool

    @property
    def description(self) -> str:
        return f"Credential validation for {self.state}"


VALIDATIONS = [
    Validation("user credentials are valid", "correct-horse-battery-staple", valid=True),
    Validation("user credentials are invalid", "wrong-password", valid=False),
]


async def _validate(base_url: str, password: str) -> bool:
    async with AuthClient(base_url) as client:
        return await client.validate_credentials("alice", password)


@pytest.mark.contract
@pytest.mark.parametrize("case", VALIDATIONS, ids=lambda case: case.state)
def test_auth_client_reads_the_verdict(case: Validation, tmp_path: Path) -> None:
    pact = Pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving(case.description)
        .given(case.state)
        .with_request("POST", "/auth/validate")
        .with_body({"username": "alice", "password": case.password}, "application/json")
        .will_respond_with(200)
        .with_body({"valid": case.valid}, "application/json")
    )
    with pact.serve(addr="127.0.0.1") as server:
        assert asyncio.run(_validate(str(server.url), case.password)) is case.valid
        check_interaction(server, CONSUMER, PROVIDER, tmp_path)


@pytest.mark.contract
def test_committed_pact_holds_exactly_these_interactions() -> None:
    check_descriptions(CONSUMER, PROVIDER, {case.description for case in VALIDATIONS})
