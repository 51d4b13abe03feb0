"""Fixtures shared by the auth-service tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from auth_service.credentials import CredentialStore
from auth_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def password() -> str:
    return "correct horse battery staple"


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "auth.db"


@pytest.fixture
def fast_settings(database_path: Path) -> Settings:
    """Settings with cheap argon2id parameters, so unit tests stay quick."""
    return Settings(
        database_url=f"sqlite:///{database_path}",
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        hash_workers=2,
    )


@pytest.fixture
def store(fast_settings: Settings) -> Iterator[CredentialStore]:
    with CredentialStore.from_settings(fast_settings) as opened:
        yield opened
