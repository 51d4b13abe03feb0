"""Backends for the account-store suite: in memory, a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import drop_schema, new_schema
from tests.support.postgres import postgres_url as support_postgres_url
from tests.user_service.durable_stores import POSTGRES_URL_VARIABLE
from user_service.accounts import AccountStore, IdempotencyPolicy, InMemoryAccountStore
from user_service.postgres_store import PostgresAccountStore
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path


@dataclass(frozen=True)
class Backend:
    """Makes account stores; for the durable ones, every store it makes shares one database."""

    name: str
    make: Callable[[IdempotencyPolicy | None], AccountStore]

    def new(self, policy: IdempotencyPolicy | None = None) -> AccountStore:
        """A new store instance, not opened yet."""
        return self.make(policy)

    def run(
        self,
        scenario: Callable[[AccountStore], Awaitable[None]],
        *,
        policy: IdempotencyPolicy | None = None,
    ) -> None:
        """Run ``scenario`` on a new, opened store in a fresh event loop, then close the store."""

        async def main() -> None:
            store = self.new(policy)
            await store.open()
            try:
                await scenario(store)
            finally:
                await store.close()

        asyncio.run(main())


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL; skips the test when it is unreachable, or fails it when CI=true."""
    return support_postgres_url(POSTGRES_URL_VARIABLE)


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A new schema of its own for one test, dropped afterwards."""
    schema = new_schema(postgres_url)
    yield schema
    drop_schema(postgres_url, schema)


def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "memory":
        return Backend(name, InMemoryAccountStore)
    if name == "sqlite":
        path = tmp_path / "data" / "accounts.db"
        return Backend(name, lambda policy: SqliteAccountStore(path, policy=policy))
    url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("postgres_schema")
    return Backend(name, lambda policy: PostgresAccountStore(url, policy=policy, schema=schema))


PAGE_SIZE = 4096


def fill_then_corrupt(path: Path) -> None:
    """Store accounts in the store's file at ``path``, then make every page but the first garbage.

    The first page (header and schema) is left, so the file still opens.
    """

    async def fill() -> None:
        store = SqliteAccountStore(path)
        await store.open()
        await asyncio.gather(*(store.create(f"user{n}") for n in range(50)))
        await store.close()

    asyncio.run(fill())
    size = path.stat().st_size
    with path.open("r+b") as database:
        database.seek(PAGE_SIZE)
        database.write(b"\xff" * (size - PAGE_SIZE))


@pytest.fixture
def corrupt_sqlite_file(tmp_path: Path) -> Path:
    """A store's file holding accounts, every page but the first (header and schema) garbage."""
    path = tmp_path / "corrupt" / "accounts.db"
    fill_then_corrupt(path)
    return path


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each kind of store."""
    return _backend(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each kind of store that keeps its accounts in a database that several instances share."""
    return _backend(request.param, request, tmp_path)
