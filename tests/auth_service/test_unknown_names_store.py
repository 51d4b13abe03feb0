"""Failures of names that are not users: keyed digests, expiry and the cap, on each database."""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio
import asyncpg
import pytest

from auth_service.lockout import LockoutPolicy
from auth_service.store import (
    Admitted,
    LockedOut,
    StoreUnavailableError,
    UnknownUser,
    store_from_settings,
)
from auth_service.store.base import NAME_KEY_BYTES, NameDigest
from auth_service.store.postgres import _TABLES as _POSTGRES_TABLES
from auth_service.store.sqlite import _MIGRATIONS as _SQLITE_MIGRATIONS
from auth_service.store.sqlite import _count_unknown_names
from servicekit.database_url import SqliteUrl
from servicekit.postgres import PostgresDatabase
from servicekit.sqlite import SqliteDatabase
from tests.auth_service.conftest import make_settings
from tests.auth_service.database import raw_rows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from auth_service.settings import Settings
    from auth_service.store import CredentialStore

pytestmark = pytest.mark.anyio

CAP = 3
POLICY = LockoutPolicy(threshold=3, window_seconds=60.0, max_tracked_unknown_names=CAP)
NOW = 1_800_000_000.0
HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
# What people type into the username field by mistake.
TYPED_PASSWORD = "hunter2-my-password"


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[CredentialStore]:
    async with store_from_settings(settings) as opened:
        yield opened


async def fail(
    store: CredentialStore,
    username: str,
    times: int = 1,
    *,
    now: float = NOW,
    policy: LockoutPolicy = POLICY,
) -> None:
    for _ in range(times):
        await store.record_failure(username, now=now, policy=policy)


async def key_of(database_url: str) -> bytes:
    [(key,)] = await raw_rows(database_url, "SELECT digest_key FROM unknown_name_tracking")
    return bytes(key)


def digest(key: bytes, username: str) -> bytes:
    return hmac.digest(key, username.encode(), "sha256")


async def counters(database_url: str) -> dict[bytes, tuple[int, float]]:
    """The rows of unknown names, and (checked alongside) that the count kept of them is right."""
    rows = await raw_rows(
        database_url, "SELECT digest, failed_attempts, window_started FROM unknown_name_failures"
    )
    [(tracked,)] = await raw_rows(database_url, "SELECT tracked FROM unknown_name_tracking")
    assert tracked == len(rows)
    return {bytes(name): (failures, started) for name, failures, started in rows}


async def tracked_names(database_url: str, *usernames: str) -> list[str]:
    """Which of ``usernames`` have a row of their own."""
    key = await key_of(database_url)
    rows = await counters(database_url)
    return [username for username in usernames if digest(key, username) in rows]


async def test_an_unknown_name_is_kept_as_its_keyed_digest_only(
    store: CredentialStore, settings: Settings
) -> None:
    await fail(store, TYPED_PASSWORD)

    key = await key_of(settings.database_url)
    assert len(key) == NAME_KEY_BYTES
    assert await counters(settings.database_url) == {digest(key, TYPED_PASSWORD): (1, NOW)}
    assert await raw_rows(settings.database_url, "SELECT count(*) FROM credentials") == [(0,)]


async def test_the_sqlite_file_never_holds_an_unknown_name(
    sqlite_settings: Settings, database_path: Path
) -> None:
    async with store_from_settings(sqlite_settings) as store:
        await fail(store, TYPED_PASSWORD, POLICY.threshold)
        written = [
            await anyio.Path(path).read_bytes()
            for path in database_path.parent.iterdir()
            if path.name.startswith(database_path.name)
        ]

    assert written
    assert not [content for content in written if TYPED_PASSWORD.encode() in content]


async def test_each_database_makes_its_own_random_key(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / name}" for name in ("one.db", "two.db")]
    for url in urls:
        async with store_from_settings(make_settings(url)):
            pass

    keys = [await key_of(url) for url in urls]
    assert keys[0] != keys[1]


async def test_stores_on_one_database_digest_a_name_alike(settings: Settings) -> None:
    async with store_from_settings(settings) as one, store_from_settings(settings) as two:
        await fail(one, "ghost", 2)
        await fail(two, "ghost", 1)

        assert await one.look_up("ghost", now=NOW, policy=POLICY) == LockedOut(60.0)
    async with store_from_settings(settings) as reopened:
        assert await reopened.look_up("ghost", now=NOW, policy=POLICY) == LockedOut(60.0)
    assert len(await counters(settings.database_url)) == 1


async def test_concurrent_failures_of_a_new_name_on_two_stores_are_all_counted(
    settings: Settings,
) -> None:
    async with store_from_settings(settings) as one, store_from_settings(settings) as two:
        await asyncio.gather(
            *(
                store.record_failure("ghost", now=NOW, policy=POLICY)
                for _ in range(15)
                for store in (one, two)
            )
        )

    assert [failures for failures, _ in (await counters(settings.database_url)).values()] == [30]


async def test_a_name_whose_window_has_passed_counts_zero_and_reuses_its_row(
    store: CredentialStore, settings: Settings
) -> None:
    await fail(store, "ghost", POLICY.threshold)
    later = NOW + POLICY.window_seconds

    unlocked = await store.look_up("ghost", now=later, policy=POLICY)
    await fail(store, "ghost", now=later)

    key = await key_of(settings.database_url)
    assert unlocked == UnknownUser()
    assert await counters(settings.database_url) == {digest(key, "ghost"): (1, later)}


async def test_at_the_cap_a_row_whose_window_has_passed_goes_first(
    store: CredentialStore, settings: Settings
) -> None:
    await fail(store, "old", now=NOW)
    await fail(store, "middle", now=NOW + 10)
    await fail(store, "young", now=NOW + 50)

    await fail(store, "new", now=NOW + 65)

    assert await tracked_names(settings.database_url, "old", "middle", "young", "new") == [
        "middle",
        "young",
        "new",
    ]


async def test_at_the_cap_every_row_whose_window_has_passed_goes(
    store: CredentialStore, settings: Settings
) -> None:
    await fail(store, "old", now=NOW)
    await fail(store, "middle", now=NOW + 1)
    await fail(store, "young", now=NOW + 50)

    await fail(store, "new", now=NOW + 70)

    assert await tracked_names(settings.database_url, "old", "middle", "young", "new") == [
        "young",
        "new",
    ]


async def test_at_the_cap_with_every_window_open_the_oldest_goes_and_is_unlocked(
    store: CredentialStore, settings: Settings
) -> None:
    await fail(store, "old", POLICY.threshold, now=NOW)
    await fail(store, "middle", now=NOW + 1)
    await fail(store, "young", now=NOW + 2)
    locked = await store.look_up("old", now=NOW + 3, policy=POLICY)

    await fail(store, "new", now=NOW + 3)

    assert locked == LockedOut(57.0)
    assert await store.look_up("old", now=NOW + 3, policy=POLICY) == UnknownUser()
    assert await tracked_names(settings.database_url, "old", "middle", "young", "new") == [
        "middle",
        "young",
        "new",
    ]


async def test_at_the_cap_a_name_already_kept_makes_no_room(
    store: CredentialStore, settings: Settings
) -> None:
    for n, username in enumerate(["old", "middle", "young"]):
        await fail(store, username, now=NOW + n)

    await fail(store, "old", now=NOW + 3)

    assert await tracked_names(settings.database_url, "old", "middle", "young") == [
        "old",
        "middle",
        "young",
    ]


async def test_users_are_never_evicted(store: CredentialStore, settings: Settings) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold)

    for n in range(3 * CAP):
        await fail(store, f"ghost{n}", now=NOW + 1 + n)

    assert await store.look_up("alice", now=NOW + 30, policy=POLICY) == LockedOut(30.0)
    assert len(await counters(settings.database_url)) == CAP


async def test_a_lowered_cap_is_reached_at_the_next_new_name(
    store: CredentialStore, settings: Settings
) -> None:
    roomy = LockoutPolicy(threshold=3, window_seconds=60.0, max_tracked_unknown_names=10)
    for n in range(6):
        await fail(store, f"ghost{n}", now=NOW + n, policy=roomy)

    await fail(store, "new", now=NOW + 10, policy=POLICY)

    assert await tracked_names(settings.database_url, "ghost4", "ghost5", "new") == [
        "ghost4",
        "ghost5",
        "new",
    ]
    assert len(await counters(settings.database_url)) == CAP


async def test_new_names_on_two_stores_at_once_stay_within_the_cap(settings: Settings) -> None:
    async with store_from_settings(settings) as one, store_from_settings(settings) as two:
        await asyncio.gather(
            *(
                (one, two)[n % 2].record_failure(f"ghost{n}", now=NOW + n, policy=POLICY)
                for n in range(24)
            )
        )

    assert len(await counters(settings.database_url)) == CAP


async def test_a_name_locked_before_it_was_a_user_starts_afresh(store: CredentialStore) -> None:
    await fail(store, "bob", POLICY.threshold)

    await store.add("bob", HASH)

    assert await store.look_up("bob", now=NOW, policy=POLICY) == Admitted(HASH, failures=0)


async def test_a_removed_user_is_unknown_with_no_failures(store: CredentialStore) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold)

    await store.remove("alice")

    assert await store.look_up("alice", now=NOW, policy=POLICY) == UnknownUser()


async def test_a_name_is_digested_only_once_the_key_is_read() -> None:
    name_digest = NameDigest()

    with pytest.raises(StoreUnavailableError, match="not open"):
        name_digest("ghost")
    name_digest.use_key(b"k" * NAME_KEY_BYTES)

    assert name_digest("ghost") == digest(b"k" * NAME_KEY_BYTES, "ghost")
    assert "kkkk" not in repr(name_digest)


async def make_the_release_before_unknown_name_counters(settings: Settings) -> None:
    """Make the tables as the migrations before this change made them."""
    database = settings.database
    older: SqliteDatabase | PostgresDatabase
    if isinstance(database, SqliteUrl):
        before = _SQLITE_MIGRATIONS.index(_count_unknown_names)
        older = SqliteDatabase(
            database.path,
            migrations=_SQLITE_MIGRATIONS[:before],
            timeout_seconds=5,
            unavailable=RuntimeError,
        )
    else:
        steps = _POSTGRES_TABLES.migrations
        before = next(
            n for n, step in enumerate(steps) if "DROP TABLE unknown_username_attempts" in step
        )
        older = PostgresDatabase(
            database.dsn,
            replace(_POSTGRES_TABLES, migrations=steps[:before]),
            unavailable=RuntimeError,
            timeout_seconds=5,
            max_connections=1,
        )
    await older.open()
    await older.close()


async def test_the_shared_row_of_the_release_before_is_replaced(settings: Settings) -> None:
    await make_the_release_before_unknown_name_counters(settings)
    before = await raw_rows(settings.database_url, "SELECT attempts FROM unknown_username_attempts")

    async with store_from_settings(settings) as store:
        await fail(store, "ghost")

    with pytest.raises((sqlite3.OperationalError, asyncpg.UndefinedTableError)):
        await raw_rows(settings.database_url, "SELECT attempts FROM unknown_username_attempts")
    assert before == [(0,)]
    assert len(await key_of(settings.database_url)) == NAME_KEY_BYTES
    assert len(await counters(settings.database_url)) == 1
