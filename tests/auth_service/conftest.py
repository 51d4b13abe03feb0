"""Fixtures shared by the auth-service tests: real SQLite files and a real PostgreSQL schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from auth_service.settings import Settings
from tests.support.postgres import drop_schema, new_schema, postgres_url

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

POSTGRES_URL_VARIABLE = "AUTH_SERVICE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgres"]

# Cheap argon2id, so that tests which are not about cost stay quick.
FAST_ARGON2: dict[str, Any] = {
    "argon2_time_cost": 1,
    "argon2_memory_cost": 1024,
    "argon2_parallelism": 1,
}


def with_query(url: str, **parameters: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in parameters.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def password() -> str:
    return "correct horse battery staple"


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "auth.db"


@pytest.fixture
def sqlite_url(database_path: Path) -> str:
    return f"sqlite:///{database_path}"


@pytest.fixture
def postgres_server_url() -> str:
    """The test server's URL; skips (or fails under CI=true) when it is unreachable."""
    return postgres_url(POSTGRES_URL_VARIABLE)


@pytest.fixture
def postgres_schema(postgres_server_url: str) -> Iterator[str]:
    """A fresh schema, dropped after the test."""
    schema = new_schema(postgres_server_url)
    yield schema
    drop_schema(postgres_server_url, schema)


@pytest.fixture
def postgres_database_url(postgres_server_url: str, postgres_schema: str) -> str:
    return with_query(postgres_server_url, search_path=postgres_schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A database of each kind in turn: a SQLite file, then a PostgreSQL schema."""
    fixture = "sqlite_url" if backend == "sqlite" else "postgres_database_url"
    url: str = request.getfixturevalue(fixture)
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, **{**FAST_ARGON2, "hash_workers": 2, **overrides})


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Cheap settings on each kind of database."""
    return make_settings(database_url)


@pytest.fixture
def sqlite_settings(sqlite_url: str) -> Settings:
    """Cheap settings on a SQLite file, for what does not depend on the database."""
    return make_settings(sqlite_url)
