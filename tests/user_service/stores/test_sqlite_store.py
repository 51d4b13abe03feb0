"""What only the SQLite store does: its file, its pragmas, and sharing the file with others."""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.user_service.stores.clock import ManualClock, policy_on
from user_service.accounts import (
    CLIENT_TOKENS_TABLE,
    AccountStoreBusyError,
    AccountStoreUnavailableError,
    Claimed,
    Completed,
    IdempotencyClaim,
    UserAccount,
    UsernameTakenError,
)
from user_service.sqlite_store import SCHEMA_VERSION, SqliteAccountStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

RACERS_PER_PROCESS = 5


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


def test_nothing_is_opened_before_open(tmp_path: Path) -> None:
    SqliteAccountStore(tmp_path / "missing" / "accounts.db")
    assert list(tmp_path.iterdir()) == []


def test_open_creates_the_folder_and_a_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "accounts.db"

    async def main() -> None:
        store = SqliteAccountStore(path)
        await store.open()
        await store.close()

    asyncio.run(main())
    assert _query(path, "PRAGMA journal_mode") == [("wal",)]
    assert _query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {row[0] for row in _query(path, "SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"accounts", "idempotency_keys", CLIENT_TOKENS_TABLE} <= tables


def test_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def main() -> None:
        store = SqliteAccountStore(Path("var/accounts.db"))
        await store.open()
        await store.create("alice")
        await store.close()

    asyncio.run(main())
    assert _query(tmp_path / "var" / "accounts.db", "SELECT username FROM accounts") == [("alice",)]


def test_calls_fail_as_unavailable_before_open_and_after_close(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteAccountStore(tmp_path / "accounts.db")
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()
        with pytest.raises(AccountStoreUnavailableError, match="closed"):
            await store.create("alice")
        await store.open()
        await store.ping()
        await store.close()
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.claim(IdempotencyClaim("key-1", "alice"))
        with pytest.raises(AccountStoreUnavailableError, match="closed"):
            await store.create("alice")
        await store.close()

    asyncio.run(main())


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    async def main() -> None:
        store = SqliteAccountStore(path)
        with pytest.raises(AccountStoreUnavailableError, match="schema version"):
            await store.open()
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()

    asyncio.run(main())


def test_waiting_for_another_writer_does_not_block_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> None:
        store = SqliteAccountStore(path)
        await store.open()
        try:
            with closing(sqlite3.connect(path, isolation_level=None)) as other_process:
                other_process.execute("BEGIN IMMEDIATE")
                creating = asyncio.create_task(store.create("alice"))
                # Had create blocked the loop, it would have waited out its busy_timeout and failed.
                for _ in range(10):
                    await asyncio.sleep(0.01)
                assert not creating.done()
                other_process.execute("ROLLBACK")
            account = await creating
            assert await store.get(account.id) == account
        finally:
            await store.close()

    asyncio.run(main())


def test_a_writer_holding_the_file_too_long_makes_the_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> None:
        store = SqliteAccountStore(path, timeout_seconds=0.05)
        await store.open()
        try:
            with closing(sqlite3.connect(path, isolation_level=None)) as other_process:
                other_process.execute("BEGIN IMMEDIATE")
                with pytest.raises(AccountStoreUnavailableError, match="locked"):
                    await store.create("alice")
                other_process.execute("ROLLBACK")
            await store.create("alice")
        finally:
            await store.close()

    asyncio.run(main())


def test_concurrent_creates_are_committed_together(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> list[UserAccount]:
        store = SqliteAccountStore(path)
        await store.open()
        try:
            return await asyncio.gather(*(store.create(f"user{n}") for n in range(50)))
        finally:
            await store.close()

    accounts = asyncio.run(main())
    assert sorted(account.id for account in accounts) == list(range(1, 51))
    # One transaction stamps one time on all of its accounts.
    assert _query(path, "SELECT COUNT(DISTINCT created_at), COUNT(*) FROM accounts") == [(1, 50)]


def test_close_commits_the_creates_already_queued(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> list[UserAccount]:
        store = SqliteAccountStore(path)
        await store.open()
        creating = [asyncio.create_task(store.create(f"user{n}")) for n in range(10)]
        await asyncio.sleep(0)
        await store.close()
        return [await task for task in creating]

    accounts = asyncio.run(main())
    assert len(accounts) == 10
    assert _query(path, "SELECT COUNT(*) FROM accounts") == [(10,)]


def test_a_caller_giving_up_leaves_the_others_answered(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> list[UserAccount]:
        store = SqliteAccountStore(path)
        await store.open()
        try:
            creating = [asyncio.create_task(store.create(f"user{n}")) for n in range(5)]
            await asyncio.sleep(0)
            creating[2].cancel()
            answered = await asyncio.gather(*creating[:2], *creating[3:])
            assert creating[2].cancelled()
            return answered
        finally:
            await store.close()

    assert [account.username for account in asyncio.run(main())] == [
        "user0",
        "user1",
        "user3",
        "user4",
    ]


@contextmanager
def _writer_lock_held_elsewhere(path: Path) -> Iterator[None]:
    """Hold the store's writer lock as another user-service process would."""
    with (path.parent / f"{path.name}-writer.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def test_a_write_waits_for_another_process_holding_the_writer_lock(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> None:
        store = SqliteAccountStore(path)
        await store.open()
        try:
            with _writer_lock_held_elsewhere(path):
                creating = asyncio.create_task(store.create("alice"))
                for _ in range(10):
                    await asyncio.sleep(0.01)
                assert not creating.done()
            account = await asyncio.wait_for(creating, timeout=1)
            assert await store.get(account.id) == account
        finally:
            await store.close()

    asyncio.run(main())


def test_a_writer_lock_held_too_long_makes_the_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> None:
        store = SqliteAccountStore(path, timeout_seconds=0.05)
        await store.open()
        try:
            with _writer_lock_held_elsewhere(path):
                with pytest.raises(AccountStoreUnavailableError, match="locked"):
                    await store.create("alice")
                with pytest.raises(AccountStoreUnavailableError, match="locked"):
                    await store.claim(IdempotencyClaim("key-1", "alice"))
            assert (await store.create("alice")).username == "alice"
        finally:
            await store.close()

    asyncio.run(main())
    assert _query(path, "SELECT username FROM accounts") == [("alice",)]


def test_expired_keys_are_purged_when_a_key_is_claimed(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    clock = ManualClock()

    async def main() -> None:
        store = SqliteAccountStore(
            path, policy=policy_on(clock, ttl=timedelta(hours=1), lease=timedelta(minutes=1))
        )
        await store.open()
        try:
            await store.claim(IdempotencyClaim("old", "body"))
            clock.advance(timedelta(hours=1))
            assert await store.claim(IdempotencyClaim("new", "body")) == Claimed()
        finally:
            await store.close()

    asyncio.run(main())
    assert _query(path, "SELECT key FROM idempotency_keys") == [("new",)]


def test_a_file_that_is_not_a_database_is_unavailable_at_open(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    path.write_bytes(b"not a database, " * 1024)

    async def main() -> None:
        store = SqliteAccountStore(path)
        with pytest.raises(AccountStoreUnavailableError, match="not a database") as caught:
            await store.open()
        assert type(caught.value.__cause__) is sqlite3.DatabaseError
        with pytest.raises(AccountStoreUnavailableError, match="not open"):
            await store.ping()

    asyncio.run(main())


def test_a_corrupt_file_makes_every_call_unavailable(corrupt_sqlite_file: Path) -> None:
    async def main() -> None:
        store = SqliteAccountStore(corrupt_sqlite_file)
        await store.open()
        try:
            calls: list[Awaitable[object]] = [
                store.ping(),
                store.get(1),
                store.create("alice"),
                store.claim(IdempotencyClaim("key-1", "alice")),
            ]
            for call in calls:
                with pytest.raises(AccountStoreUnavailableError, match="malformed") as caught:
                    await call
                assert type(caught.value.__cause__) is sqlite3.DatabaseError
        finally:
            await store.close()

    asyncio.run(main())


def test_a_file_of_schema_version_1_is_migrated_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    clock = ManualClock()
    policy = policy_on(clock, ttl=timedelta(hours=1), lease=timedelta(minutes=1))

    async def run(scenario: Callable[[SqliteAccountStore], Awaitable[None]]) -> None:
        store = SqliteAccountStore(path, policy=policy)
        await store.open()
        try:
            await scenario(store)
        finally:
            await store.close()

    async def first_release(store: SqliteAccountStore) -> None:
        claim = IdempotencyClaim("key-1", "alice")
        await store.claim(claim)
        await store.create("alice", idempotency=claim)

    async def replay(store: SqliteAccountStore) -> None:
        outcome = await store.claim(IdempotencyClaim("key-1", "alice"))
        assert isinstance(outcome, Completed)
        assert outcome.account.username == "alice"

    asyncio.run(run(first_release))
    # Back to version 1, the schema before claims carried a token (and before client tokens).
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute(f"DROP TABLE {CLIENT_TOKENS_TABLE}")
        connection.execute("ALTER TABLE idempotency_keys DROP COLUMN token")
        connection.execute("PRAGMA user_version = 1")
    asyncio.run(run(replay))
    assert _query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    columns = [row[1] for row in _query(path, "PRAGMA table_info(idempotency_keys)")]
    assert columns[-1] == "token"
    tables = {row[0] for row in _query(path, "SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert CLIENT_TOKENS_TABLE in tables


def test_creates_past_the_queue_bound_are_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    bound = 3

    async def main() -> None:
        store = SqliteAccountStore(path, max_queued_creates=bound)
        await store.open()
        try:
            with _writer_lock_held_elsewhere(path):
                # Queued together, before the committer has taken any of them.
                creating = [asyncio.create_task(store.create(f"user{n}")) for n in range(bound + 2)]
                done, _ = await asyncio.wait(creating[bound:], timeout=5)
                assert done == set(creating[bound:])
                for refused in creating[bound:]:
                    with pytest.raises(AccountStoreBusyError, match="waiting"):
                        refused.result()
                assert not any(task.done() for task in creating[:bound])
            accounts = await asyncio.gather(*creating[:bound])
            assert [account.username for account in accounts] == ["user0", "user1", "user2"]
            # With the queue drained, creates are taken again.
            assert (await store.create("user9")).username == "user9"
        finally:
            await store.close()

    asyncio.run(main())
    assert _query(path, "SELECT COUNT(*) FROM accounts") == [(bound + 1,)]


def test_a_create_arriving_while_the_store_closes_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"

    async def main() -> None:
        store = SqliteAccountStore(path)
        await store.open()
        with _writer_lock_held_elsewhere(path):
            queued = asyncio.create_task(store.create("alice"))
            await asyncio.sleep(0)
            closing_down = asyncio.create_task(store.close())
            await asyncio.sleep(0)
            assert not closing_down.done()
            with pytest.raises(AccountStoreUnavailableError, match="closing"):
                await store.create("bob")
        await closing_down
        assert (await queued).username == "alice"

    asyncio.run(main())
    assert _query(path, "SELECT username FROM accounts") == [("alice",)]


def _race_in_another_process(path: Path) -> tuple[int, int]:
    """Create one username and claim one key, several times at once, from a new process."""

    async def main() -> tuple[int, int]:
        store = SqliteAccountStore(path)
        await store.open()
        try:
            created = await asyncio.gather(
                *(store.create("alice") for _ in range(RACERS_PER_PROCESS)),
                return_exceptions=True,
            )
            claimed = await asyncio.gather(
                *(store.claim(IdempotencyClaim("key", "body")) for _ in range(RACERS_PER_PROCESS))
            )
        finally:
            await store.close()
        if any(not isinstance(result, UserAccount | UsernameTakenError) for result in created):
            raise AssertionError(created)
        accounts = sum(isinstance(result, UserAccount) for result in created)
        return accounts, claimed.count(Claimed())

    return asyncio.run(main())


def test_processes_sharing_the_file_make_one_account_and_one_claim(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    processes = 2
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        results = list(pool.map(_race_in_another_process, [path] * processes))
    assert sum(accounts for accounts, _ in results) == 1
    assert sum(claims for _, claims in results) == 1
