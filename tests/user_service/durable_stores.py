"""The durable account stores, each on a real database: a SQLite file and a PostgreSQL schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import drop_schema, new_schema, postgres_url
from user_service.postgres_store import PostgresAccountStore
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from user_service.accounts import AccountStore

POSTGRES_URL_VARIABLE = "USER_SERVICE_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccountStore]:
    """A new, unopened store on an empty database of each kind."""
    if request.param == "sqlite":
        yield SqliteAccountStore(tmp_path / "accounts.db")
        return
    url = postgres_url(POSTGRES_URL_VARIABLE)
    schema = new_schema(url)
    try:
        yield PostgresAccountStore(url, schema=schema)
    finally:
        drop_schema(url, schema)
