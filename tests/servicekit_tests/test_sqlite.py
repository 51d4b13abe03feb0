"""The shared SQLite plumbing, on real files: its mode, its schema versions and its failures."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import stat
from contextlib import closing
from typing import TYPE_CHECKING

import pytest

from servicekit.sqlite import SqliteDatabase, statements

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


class UnavailableError(Exception):
    """What the store under test raises for any failure of its database."""


class DomainError(Exception):
    """An answer of the store's own, which must pass through untouched."""


CREATE_ITEMS = statements("CREATE TABLE items (name TEXT PRIMARY KEY)")


def database(
    path: Path,
    migrations: Sequence[Callable[[sqlite3.Connection], None]] = (CREATE_ITEMS,),
    *,
    timeout_seconds: float = 5.0,
) -> SqliteDatabase:
    return SqliteDatabase(
        path,
        migrations=migrations,
        timeout_seconds=timeout_seconds,
        unavailable=UnavailableError,
    )


def test_open_makes_a_private_wal_file_at_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "data.db"

    async def main() -> tuple[object, object]:
        db = database(path)
        await db.open()
        try:
            synchronous = await db.write(
                lambda connection: connection.execute("PRAGMA synchronous").fetchone()[0]
            )
            version = await db.read(
                lambda connection: connection.execute("PRAGMA user_version").fetchone()[0]
            )
        finally:
            await db.close()
        return synchronous, version

    assert asyncio.run(main()) == (2, 1)  # FULL, and one migration
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_migrations_run_once_each_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    ran: list[str] = []

    def step(name: str) -> Callable[[sqlite3.Connection], None]:
        def migrate(connection: sqlite3.Connection) -> None:
            ran.append(name)
            connection.execute(f"CREATE TABLE {name} (x)")

        return migrate

    async def open_and_close(migrations: Sequence[Callable[[sqlite3.Connection], None]]) -> None:
        db = database(path, migrations)
        await db.open()
        await db.close()

    asyncio.run(open_and_close([step("one")]))
    asyncio.run(open_and_close([step("one")]))
    asyncio.run(open_and_close([step("one"), step("two"), step("three")]))
    assert ran == ["one", "two", "three"]


def test_a_failing_migration_leaves_the_schema_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    broken = statements("CREATE TABLE half (x)", "NOT SQL AT ALL")

    async def main() -> None:
        db = database(path, [CREATE_ITEMS, broken])
        with pytest.raises(UnavailableError, match="syntax error"):
            await db.open()
        assert not db.is_open

    asyncio.run(main())
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (0,)
        assert connection.execute("SELECT name FROM sqlite_schema").fetchall() == []


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA user_version = 7")

    async def main() -> None:
        db = database(path)
        with pytest.raises(UnavailableError, match="schema version 7; this code knows 1"):
            await db.open()
        with pytest.raises(UnavailableError, match="not open"):
            await db.read(lambda connection: connection.execute("SELECT 1"))

    asyncio.run(main())


def test_a_write_that_raises_rolls_back_and_its_error_passes_through(tmp_path: Path) -> None:
    def insert_then_refuse(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO items VALUES ('a')")
        raise DomainError

    async def main() -> list[tuple[str]]:
        db = database(tmp_path / "data.db")
        await db.open()
        try:
            with pytest.raises(DomainError):
                await db.write(insert_then_refuse)
            await db.write(lambda connection: connection.execute("INSERT INTO items VALUES ('b')"))
            return await db.read(
                lambda connection: [tuple(row) for row in connection.execute("SELECT * FROM items")]
            )
        finally:
            await db.close()

    assert asyncio.run(main()) == [("b",)]


def test_every_sqlite_error_becomes_the_stores_error(tmp_path: Path) -> None:
    async def main() -> None:
        db = database(tmp_path / "data.db")
        await db.open()
        try:
            with pytest.raises(UnavailableError, match="UNIQUE") as caught:
                await db.write(
                    lambda connection: connection.executemany(
                        "INSERT INTO items VALUES (?)", [("a",), ("a",)]
                    )
                )
            assert type(caught.value.__cause__) is sqlite3.IntegrityError
            with pytest.raises(UnavailableError, match="readonly") as caught:
                await db.read(
                    lambda connection: connection.execute("INSERT INTO items VALUES ('a')")
                )
            assert type(caught.value.__cause__) is sqlite3.OperationalError
        finally:
            await db.close()
        with pytest.raises(UnavailableError, match="not open"):
            await db.write(lambda connection: connection.execute("SELECT 1"))

    asyncio.run(main())


def test_a_folder_that_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    async def main() -> None:
        db = database(blocker / "data.db")
        with pytest.raises(UnavailableError, match="SQLite failed") as caught:
            await db.open()
        assert isinstance(caught.value.__cause__, OSError)

    asyncio.run(main())


def test_ping_notices_that_the_file_was_replaced(tmp_path: Path) -> None:
    path = tmp_path / "data.db"

    async def main() -> None:
        db = database(path)
        await db.open()
        try:
            await db.ping("SELECT 1 FROM items")
            path.unlink()
            with pytest.raises(UnavailableError, match="removed or replaced"):
                await db.ping("SELECT 1 FROM items")
        finally:
            await db.close()

    asyncio.run(main())


def test_a_writer_lock_held_by_another_process_times_out(tmp_path: Path) -> None:
    path = tmp_path / "data.db"

    async def main() -> None:
        db = database(path, timeout_seconds=0.05)
        await db.open()
        try:
            with (tmp_path / "data.db-writer.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                with pytest.raises(UnavailableError, match="locked"):
                    await db.write(lambda connection: connection.execute("SELECT 1"))
                fcntl.flock(lock, fcntl.LOCK_UN)
            await db.write(lambda connection: connection.execute("INSERT INTO items VALUES ('a')"))
        finally:
            await db.close()

    asyncio.run(main())
