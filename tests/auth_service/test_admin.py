"""UserAdmin: managing users synchronously, on each kind of database."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest

from auth_service.admin import UserAdmin
from auth_service.passwords import InvalidPasswordError, PasswordHashing
from auth_service.store import UnknownUserError, UserExistsError
from tests.auth_service.database import stored_hash
from usernames import InvalidUsernameError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from auth_service.settings import Settings


@pytest.fixture
def admin(settings: Settings) -> Iterator[UserAdmin]:
    with UserAdmin(settings) as opened:
        yield opened


def password_of(settings: Settings, username: str, password: str) -> bool:
    stored = asyncio.run(stored_hash(settings.database_url, username))
    return PasswordHashing(settings).check(stored, password).matched


def test_add_stores_the_canonical_username(admin: UserAdmin, password: str) -> None:
    assert admin.add("ALICE", password) == "alice"
    assert admin.usernames() == ["alice"]
    assert admin.contains("Alice")


def test_added_password_is_stored_normalised(admin: UserAdmin, settings: Settings) -> None:
    admin.add("alice", "cafe\u0301")

    assert password_of(settings, "alice", "caf\u00e9")


def test_duplicate_in_another_case_is_refused(admin: UserAdmin, password: str) -> None:
    admin.add("alice", password)

    with pytest.raises(UserExistsError, match="'alice'"):
        admin.add("Alice", password)


@pytest.mark.parametrize("username", ["", "has space", "a" * 65])
def test_invalid_username_is_refused(admin: UserAdmin, username: str, password: str) -> None:
    with pytest.raises(InvalidUsernameError):
        admin.add(username, password)


@pytest.mark.parametrize("bad_password", ["", "x" * 1025, "bell\x07"])
def test_invalid_password_is_refused_and_nothing_is_stored(
    admin: UserAdmin, bad_password: str
) -> None:
    with pytest.raises(InvalidPasswordError):
        admin.add("alice", bad_password)

    assert admin.usernames() == []


def test_set_password_replaces_the_password(
    admin: UserAdmin, settings: Settings, password: str
) -> None:
    admin.add("alice", password)

    admin.set_password("ALICE", "a new password")

    assert password_of(settings, "alice", "a new password")
    assert not password_of(settings, "alice", password)


def test_set_password_of_an_unknown_user_is_refused(admin: UserAdmin) -> None:
    with pytest.raises(UnknownUserError, match="'bob'"):
        admin.set_password("bob", "a new password")


def test_remove_removes(admin: UserAdmin, password: str) -> None:
    admin.add("alice", password)

    assert admin.remove("Alice") == "alice"
    assert admin.usernames() == []


def test_remove_of_an_unknown_user_is_refused(admin: UserAdmin) -> None:
    with pytest.raises(UnknownUserError):
        admin.remove("bob")


def test_calls_from_other_threads_are_served(admin: UserAdmin, password: str) -> None:
    errors: list[BaseException] = []

    def add(index: int) -> None:
        try:
            admin.add(f"user{index}", password)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=add, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert (errors, admin.usernames()) == ([], ["user0", "user1", "user2", "user3"])


def test_use_outside_the_with_block_is_an_error(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="with block"):
        UserAdmin(settings).usernames()


def test_plain_password_is_nowhere_in_the_database_files(
    sqlite_settings: Settings, database_path: Path, password: str
) -> None:
    with UserAdmin(sqlite_settings) as admin:
        admin.add("alice", password)
        contents = b"".join(path.read_bytes() for path in database_path.parent.iterdir())

    assert password.encode() not in contents
