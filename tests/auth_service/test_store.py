"""Every store behaviour, against a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg
import pytest

from auth_service.lockout import LockoutPolicy
from auth_service.store import (
    Admitted,
    Attempt,
    LockedOut,
    StoreUnavailableError,
    UnknownUser,
    UnknownUserError,
    UserExistsError,
    store_from_settings,
)
from tests.auth_service.conftest import make_settings
from tests.auth_service.database import raw_execute, raw_rows, stored_hash

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from auth_service.settings import Settings
    from auth_service.store import CredentialStore

pytestmark = pytest.mark.anyio

POLICY = LockoutPolicy(threshold=3, window_seconds=60.0, max_tracked_unknown_names=100)
NOW = 1_800_000_000.0
HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
OTHER_HASH = "$argon2id$v=19$m=2048,t=1,p=1$c2FsdHNhbHQ$b3RoZXJvdGhlcm90aGVyMQ"


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[CredentialStore]:
    async with store_from_settings(settings) as opened:
        yield opened


async def fail(store: CredentialStore, username: str, times: int, *, now: float = NOW) -> None:
    for _ in range(times):
        await store.record_failure(username, now=now, policy=POLICY)


async def look_up(store: CredentialStore, username: str, *, now: float = NOW) -> Attempt:
    return await store.look_up(username, now=now, policy=POLICY)


async def test_added_user_is_contained_and_listed(store: CredentialStore) -> None:
    await store.add("alice", HASH)

    assert (await store.contains("alice"), await store.contains("bob")) == (True, False)
    assert await store.usernames() == ["alice"]


async def test_usernames_are_in_code_point_order(store: CredentialStore) -> None:
    for username in ("zoe", "émile", "bob", "alice", "bob2"):
        await store.add(username, HASH)

    assert await store.usernames() == ["alice", "bob", "bob2", "zoe", "émile"]


async def test_duplicate_user_is_refused_and_keeps_the_first_hash(
    store: CredentialStore, settings: Settings
) -> None:
    await store.add("alice", HASH)

    with pytest.raises(UserExistsError, match="alice"):
        await store.add("alice", OTHER_HASH)

    assert await stored_hash(settings.database_url, "alice") == HASH


async def test_concurrent_adds_of_one_name_store_one_user(store: CredentialStore) -> None:
    results = await asyncio.gather(
        *(store.add("alice", HASH) for _ in range(8)), return_exceptions=True
    )

    assert [result for result in results if result is None] == [None]
    assert all(isinstance(result, UserExistsError | None) for result in results)


async def test_removed_user_is_gone(store: CredentialStore) -> None:
    await store.add("alice", HASH)

    await store.remove("alice")

    assert await store.usernames() == []


async def test_removing_an_unknown_user_is_refused(store: CredentialStore) -> None:
    with pytest.raises(UnknownUserError, match="mallory"):
        await store.remove("mallory")


async def test_set_password_hash_replaces_the_hash(
    store: CredentialStore, settings: Settings
) -> None:
    await store.add("alice", HASH)

    await store.set_password_hash("alice", OTHER_HASH)

    assert await stored_hash(settings.database_url, "alice") == OTHER_HASH


async def test_set_password_hash_of_an_unknown_user_is_refused(store: CredentialStore) -> None:
    with pytest.raises(UnknownUserError, match="mallory"):
        await store.set_password_hash("mallory", HASH)


async def test_look_up_of_a_user_gives_the_hash_and_changes_nothing(
    store: CredentialStore,
) -> None:
    await store.add("alice", HASH)

    attempts = [await look_up(store, "alice") for _ in range(POLICY.threshold + 1)]

    assert attempts == [Admitted(HASH, failures=0)] * (POLICY.threshold + 1)


async def test_look_up_of_an_unknown_user(store: CredentialStore) -> None:
    assert await look_up(store, "mallory") == UnknownUser()


async def test_failures_are_counted(store: CredentialStore) -> None:
    await store.add("alice", HASH)

    await fail(store, "alice", POLICY.threshold - 1)

    assert await look_up(store, "alice") == Admitted(HASH, failures=POLICY.threshold - 1)


async def test_failures_of_unknown_users_make_no_user(
    store: CredentialStore, settings: Settings
) -> None:
    for n in range(5):
        await fail(store, f"ghost{n}", 1)

    assert await raw_rows(settings.database_url, "SELECT count(*) FROM credentials") == [(0,)]
    assert await store.usernames() == []


async def test_failures_of_unknown_users_are_counted_per_name(
    store: CredentialStore, settings: Settings
) -> None:
    await fail(store, "ghost", 2)
    await fail(store, "phantom", 1)

    assert sorted(
        await raw_rows(settings.database_url, "SELECT failed_attempts FROM unknown_name_failures")
    ) == [(1,), (2,)]


async def test_threshold_failures_lock_an_unknown_name_as_they_lock_a_user(
    store: CredentialStore,
) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold)
    await fail(store, "mallory", POLICY.threshold)

    assert await look_up(store, "mallory", now=NOW + 10) == LockedOut(POLICY.window_seconds - 10)
    assert await look_up(store, "mallory", now=NOW + 10) == await look_up(
        store, "alice", now=NOW + 10
    )
    assert await look_up(store, "mallory", now=NOW + POLICY.window_seconds) == UnknownUser()


async def test_threshold_failures_lock_the_account_until_the_window_ends(
    store: CredentialStore,
) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold)

    assert await look_up(store, "alice", now=NOW + 10) == LockedOut(POLICY.window_seconds - 10)
    assert await look_up(store, "alice", now=NOW + POLICY.window_seconds) == Admitted(
        HASH, failures=POLICY.threshold
    )


async def test_lock_of_one_account_leaves_the_others_alone(store: CredentialStore) -> None:
    await store.add("alice", HASH)
    await store.add("bob", OTHER_HASH)
    await fail(store, "alice", POLICY.threshold)

    assert await look_up(store, "bob") == Admitted(OTHER_HASH, failures=0)


async def test_failure_after_the_window_opens_a_new_one(store: CredentialStore) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold)
    later = NOW + POLICY.window_seconds

    await fail(store, "alice", 1, now=later)

    assert await look_up(store, "alice", now=later) == Admitted(HASH, failures=1)


async def test_success_clears_the_failures(store: CredentialStore) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold - 1)

    await store.record_success("alice", checked_hash=HASH, new_hash=None)

    assert await look_up(store, "alice") == Admitted(HASH, failures=0)


async def test_success_stores_the_upgraded_hash(store: CredentialStore, settings: Settings) -> None:
    await store.add("alice", HASH)

    await store.record_success("alice", checked_hash=HASH, new_hash=OTHER_HASH)

    assert await stored_hash(settings.database_url, "alice") == OTHER_HASH


async def test_upgrade_does_not_overwrite_a_password_set_meanwhile(
    store: CredentialStore, settings: Settings
) -> None:
    await store.add("alice", HASH)
    await store.set_password_hash("alice", OTHER_HASH)

    await store.record_success("alice", checked_hash=HASH, new_hash="$argon2id$upgraded")

    assert await stored_hash(settings.database_url, "alice") == OTHER_HASH


async def test_setting_a_password_unlocks_the_account(store: CredentialStore) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold)

    await store.set_password_hash("alice", OTHER_HASH)

    assert await look_up(store, "alice") == Admitted(OTHER_HASH, failures=0)


async def test_removing_a_user_forgets_the_failures(store: CredentialStore) -> None:
    await store.add("alice", HASH)
    await fail(store, "alice", POLICY.threshold)

    await store.remove("alice")
    await store.add("alice", HASH)

    assert await look_up(store, "alice") == Admitted(HASH, failures=0)


async def test_data_and_failures_outlive_the_store(settings: Settings) -> None:
    async with store_from_settings(settings) as first:
        await first.add("alice", HASH)
        await fail(first, "alice", POLICY.threshold)

    async with store_from_settings(settings) as second:
        assert isinstance(await look_up(second, "alice"), LockedOut)


async def test_concurrent_failures_on_two_stores_are_all_counted(settings: Settings) -> None:
    async with store_from_settings(settings) as one, store_from_settings(settings) as two:
        await one.add("alice", HASH)
        await asyncio.gather(
            *(
                store.record_failure("alice", now=NOW, policy=POLICY)
                for _ in range(15)
                for store in (one, two)
            )
        )

        assert await look_up(one, "alice") == LockedOut(POLICY.window_seconds)
    assert await raw_rows(settings.database_url, "SELECT failed_attempts FROM credentials") == [
        (30,)
    ]


async def test_reopening_is_harmless(settings: Settings) -> None:
    store = store_from_settings(settings)
    async with store:
        await store.add("alice", HASH)
    async with store:
        assert await store.usernames() == ["alice"]


async def test_ping_answers_when_the_database_does(store: CredentialStore) -> None:
    await store.ping()


async def test_ping_fails_when_closed(settings: Settings) -> None:
    store = store_from_settings(settings)
    async with store:
        pass

    with pytest.raises(StoreUnavailableError, match="not open"):
        await store.ping()


async def test_calls_fail_when_closed(settings: Settings) -> None:
    with pytest.raises(StoreUnavailableError, match="not open"):
        await store_from_settings(settings).usernames()


async def test_newer_schema_is_refused(settings: Settings, backend: str) -> None:
    async with store_from_settings(settings):
        pass
    if backend == "sqlite":
        await raw_execute(settings.database_url, "PRAGMA user_version = 99")
    else:
        await raw_execute(settings.database_url, "UPDATE auth_schema_version SET version = 99")

    with pytest.raises(StoreUnavailableError, match="version 99"):
        await store_from_settings(settings).open()


async def test_stores_opening_together_migrate_once(settings: Settings) -> None:
    stores = [store_from_settings(settings) for _ in range(4)]

    await asyncio.gather(*(store.open() for store in stores))
    try:
        await stores[0].add("alice", HASH)
        assert [await store.usernames() for store in stores] == [["alice"]] * 4
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_unreachable_postgres_is_unavailable() -> None:
    settings = make_settings("postgresql://127.0.0.1:9/auth", database_timeout_seconds=2)

    with pytest.raises(StoreUnavailableError, match="PostgreSQL"):
        await store_from_settings(settings).open()


async def test_dropped_postgres_schema_fails_the_ping(
    postgres_database_url: str, postgres_server_url: str, postgres_schema: str
) -> None:
    async with store_from_settings(make_settings(postgres_database_url)) as store:
        await raw_execute(postgres_server_url, f'DROP SCHEMA "{postgres_schema}" CASCADE')

        with pytest.raises(StoreUnavailableError, match="PostgreSQL"):
            await store.ping()


async def test_a_row_lock_held_elsewhere_times_out_as_unavailable(
    postgres_database_url: str,
) -> None:
    settings = make_settings(postgres_database_url, database_timeout_seconds=0.5)
    async with store_from_settings(settings) as store:
        await store.add("alice", HASH)
        other = await asyncpg.connect(postgres_database_url)
        try:
            async with other.transaction():
                await other.execute("SELECT 1 FROM credentials WHERE username = 'alice' FOR UPDATE")
                started = asyncio.get_running_loop().time()
                with pytest.raises(StoreUnavailableError, match="QueryCanceled"):
                    await fail(store, "alice", 1)
                assert asyncio.get_running_loop().time() - started < 5
        finally:
            await other.close()
        await fail(store, "alice", 1)
        assert await look_up(store, "alice") == Admitted(HASH, failures=1)
