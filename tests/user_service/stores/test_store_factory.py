"""Choosing the account store from ``USER_SERVICE_DATABASE_URL``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from user_service.postgres_store import PostgresAccountStore
from user_service.sqlite_store import SqliteAccountStore
from user_service.store_factory import account_store_from_url

if TYPE_CHECKING:
    from pathlib import Path


def test_sqlite_url_gives_a_sqlite_store_and_opens_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(account_store_from_url("sqlite:///var/accounts.db"), SqliteAccountStore)
    assert isinstance(account_store_from_url(f"sqlite:///{tmp_path}/a.db"), SqliteAccountStore)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url", ["postgresql://127.0.0.1:5432/test", "postgres://user:secret@db.example/accounts"]
)
def test_postgres_url_gives_a_postgres_store(url: str) -> None:
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
    store = account_store_from_url("sqlite:///var/accounts.db")

    async def main() -> None:
        await store.open()
        try:
            assert (await store.create("alice")).id == 1
        finally:
            await store.close()

    asyncio.run(main())
    assert (tmp_path / "var" / "accounts.db").is_file()
