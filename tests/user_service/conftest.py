"""Fixtures shared by the user-service tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.servers import HOST, free_port
from tests.user_service.stand_in_auth import StandInAuthService, serve_stand_in

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def running_stand_in_auth() -> Iterator[StandInAuthService]:
    with serve_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def stand_in_auth(running_stand_in_auth: StandInAuthService) -> StandInAuthService:
    """The stand-in auth-service, answering ``{"valid": true}`` and with nothing received yet."""
    running_stand_in_auth.reset()
    return running_stand_in_auth


@pytest.fixture
def unreachable_auth_url() -> str:
    """The URL of a port nothing listens on."""
    return f"http://{HOST}:{free_port()}"
