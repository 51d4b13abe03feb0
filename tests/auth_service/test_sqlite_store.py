"""What only the SQLite store does: the file, its mode, and the first release's files."""

from __future__ import annotations

import sqlite3
import stat
from typing import TYPE_CHECKING

import anyio
import pytest

from auth_service.lockout import LockoutPolicy
from auth_service.store import Admitted, StoreUnavailableError, store_from_settings
from auth_service.store.sqlite import SCHEMA_VERSION
from tests.auth_service.conftest import make_settings

if TYPE_CHECKING:
    from pathlib import Path

    from auth_service.settings import Settings

pytestmark = pytest.mark.anyio

HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
POLICY = LockoutPolicy(threshold=3, window_seconds=60, max_tracked_unknown_names=10)


def pragma(path: Path, name: str) -> object:
    connection = sqlite3.connect(path)
    try:
        (value,) = connection.execute(f"PRAGMA {name}").fetchone()
    finally:
        connection.close()
    return value


def make_first_release_file(path: Path, usernames: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "CREATE TABLE credentials (username TEXT PRIMARY KEY NOT NULL,"
            " password_hash TEXT NOT NULL)"
        )
        connection.executemany(
            "INSERT INTO credentials VALUES (?, ?)", [(name, HASH) for name in usernames]
        )
    connection.close()


async def test_opening_creates_the_folder_and_a_private_file(
    sqlite_settings: Settings, database_path: Path
) -> None:
    async with store_from_settings(sqlite_settings):
        mode = stat.S_IMODE((await anyio.Path(database_path).stat()).st_mode)

    assert mode == 0o600


async def test_database_is_in_wal_mode_at_the_current_version(
    sqlite_settings: Settings, database_path: Path
) -> None:
    async with store_from_settings(sqlite_settings):
        pass

    assert (pragma(database_path, "journal_mode"), pragma(database_path, "user_version")) == (
        "wal",
        SCHEMA_VERSION,
    )


async def test_first_release_file_is_migrated_with_canonical_usernames(
    sqlite_settings: Settings, database_path: Path
) -> None:
    make_first_release_file(database_path, ["Alice", "bob"])
    policy = LockoutPolicy(threshold=1, window_seconds=60, max_tracked_unknown_names=10)

    async with store_from_settings(sqlite_settings) as store:
        usernames = await store.usernames()
        attempt = await store.look_up("alice", now=1.0, policy=policy)

    assert (usernames, attempt) == (["alice", "bob"], Admitted(HASH, failures=0))


async def test_migration_keeps_names_it_cannot_canonicalise(
    sqlite_settings: Settings, database_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_first_release_file(database_path, ["Alice", "alice", "has space"])

    async with store_from_settings(sqlite_settings) as store:
        usernames = await store.usernames()

    assert usernames == ["Alice", "alice", "has space"]
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2


async def test_deleted_file_fails_the_ping(sqlite_settings: Settings, database_path: Path) -> None:
    async with store_from_settings(sqlite_settings) as store:
        await anyio.Path(database_path).unlink()

        with pytest.raises(StoreUnavailableError, match="removed or replaced"):
            await store.ping()


async def test_file_that_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = make_settings(f"sqlite:///{blocker / 'auth.db'}")

    with pytest.raises(StoreUnavailableError, match="SQLite"):
        await store_from_settings(settings).open()


async def test_write_lock_held_elsewhere_times_out_as_unavailable(
    sqlite_settings: Settings, database_path: Path
) -> None:
    settings = sqlite_settings.model_copy(update={"database_timeout_seconds": 0.2})
    async with store_from_settings(settings) as store:
        await store.add("alice", HASH)
        other = sqlite3.connect(database_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailableError, match="locked"):
                await store.record_failure("alice", now=1.0, policy=POLICY)
        finally:
            other.execute("ROLLBACK")
            other.close()


async def test_a_corrupt_file_is_unavailable(
    sqlite_settings: Settings, database_path: Path
) -> None:
    async with store_from_settings(sqlite_settings) as store:
        for n in range(200):
            await store.add(f"user{n}", HASH)
    page_size = pragma(database_path, "page_size")
    assert isinstance(page_size, int)
    size = (await anyio.Path(database_path).stat()).st_size
    with database_path.open("r+b") as database:
        database.seek(page_size)
        database.write(b"\xff" * (size - page_size))

    store = store_from_settings(sqlite_settings)
    # Opening reads the key of the unknown names' digests, so it meets the damage.
    with pytest.raises(StoreUnavailableError, match="malformed"):
        await store.open()
    with pytest.raises(StoreUnavailableError, match="not open"):
        await store.record_failure("user1", now=1.0, policy=POLICY)
