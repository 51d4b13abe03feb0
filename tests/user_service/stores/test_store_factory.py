"""Choosing the account store from the settings, and handing it their limits."""

from __future__ import annotations

import asyncio
import fcntl
from typing import TYPE_CHECKING

import asyncpg
import pytest

from servicekit.postgres import quote_identifier
from user_service.accounts import AccountStoreBusyError, AccountStoreUnavailableError
from user_service.postgres_store import PostgresAccountStore
from user_service.settings import Settings
from user_service.sqlite_store import SqliteAccountStore
from user_service.store_factory import account_store_from_settings, account_store_from_url

if TYPE_CHECKING:
    from pathlib import Path


def test_sqlite_url_gives_a_sqlite_store_and_opens_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite:///var/accounts.db", f"sqlite:///{tmp_path}/a.db"):
        store = account_store_from_settings(Settings(database_url=url))
        assert isinstance(store, SqliteAccountStore)
        assert isinstance(account_store_from_url(url), SqliteAccountStore)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url", ["postgresql://127.0.0.1:5432/test", "postgres://user:secret@db.example/accounts"]
)
def test_postgres_url_gives_a_postgres_store(url: str) -> None:
    assert isinstance(account_store_from_settings(Settings(database_url=url)), PostgresAccountStore)
    assert isinstance(account_store_from_url(url), PostgresAccountStore)


@pytest.mark.parametrize(
    "url", ["mysql://db.example/accounts", "accounts.db", "sqlite://relative.db"]
)
def test_other_urls_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match="USER_SERVICE_DATABASE_URL"):
        account_store_from_url(url)


def test_the_url_is_not_in_the_error() -> None:
    with pytest.raises(ValueError, match="USER_SERVICE_DATABASE_URL") as caught:
        account_store_from_url("mysql://user:hunter2@db.example/accounts")
    assert "hunter2" not in str(caught.value)


def test_sqlite_store_from_a_relative_url_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = account_store_from_settings(Settings(database_url="sqlite:///var/accounts.db"))

    async def main() -> None:
        await store.open()
        try:
            assert (await store.create("alice")).id == 1
        finally:
            await store.close()

    asyncio.run(main())
    assert (tmp_path / "var" / "accounts.db").is_file()


def test_the_sqlite_store_gets_the_settings_time_limit_and_queue_bound(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    settings = Settings(
        database_url=f"sqlite:///{path}", database_timeout_seconds=0.05, sqlite_max_queued_creates=1
    )
    store = account_store_from_settings(settings)

    async def main() -> None:
        await store.open()
        try:
            with (tmp_path / "accounts.db-writer.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                creating = [asyncio.create_task(store.create(f"user{n}")) for n in range(2)]
                results = await asyncio.gather(*creating, return_exceptions=True)
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            await store.close()
        assert [type(result) for result in results] == [
            AccountStoreUnavailableError,
            AccountStoreBusyError,
        ]
        assert "locked" in str(results[0])

    asyncio.run(main())


def test_the_postgres_store_gets_the_settings_time_limit(
    postgres_url: str, postgres_schema: str
) -> None:
    url = f"{postgres_url}?search_path={postgres_schema}"
    store = account_store_from_settings(Settings(database_url=url, database_timeout_seconds=0.3))

    async def main() -> None:
        await store.open()
        other = await asyncpg.connect(
            postgres_url, server_settings={"search_path": quote_identifier(postgres_schema)}
        )
        try:
            async with other.transaction():
                await other.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
                started = asyncio.get_running_loop().time()
                with pytest.raises(AccountStoreUnavailableError, match="QueryCanceled"):
                    await store.get(1)
                assert asyncio.get_running_loop().time() - started < 3  # not the default 5 s
        finally:
            await other.close()
            await store.close()

    asyncio.run(main())
