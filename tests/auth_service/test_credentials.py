"""The credential store over a real SQLite file."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from argon2 import extract_parameters

from auth_service.credentials import (
    MAX_PASSWORD_LENGTH,
    MAX_USERNAME_LENGTH,
    CredentialStore,
    UnknownUserError,
    UserExistsError,
)

if TYPE_CHECKING:
    from pathlib import Path

    from auth_service.settings import Settings


def stored_hash(database_path: Path, username: str) -> str:
    with sqlite3.connect(database_path) as connection:
        row = connection.execute(
            "SELECT password_hash FROM credentials WHERE username = ?", (username,)
        ).fetchone()
    connection.close()
    value: str = row[0]
    return value


def test_opening_creates_the_folder_and_the_file(
    fast_settings: Settings, database_path: Path
) -> None:
    with CredentialStore.from_settings(fast_settings):
        assert database_path.is_file()


@pytest.mark.usefixtures("store")
def test_database_is_in_wal_mode(database_path: Path) -> None:
    with sqlite3.connect(database_path) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    connection.close()

    assert mode == "wal"


def test_added_user_verifies_with_the_right_password(store: CredentialStore, password: str) -> None:
    store.add("alice", password)

    assert store.verify("alice", password)


def test_wrong_password_does_not_verify(store: CredentialStore, password: str) -> None:
    store.add("alice", password)

    assert not store.verify("alice", password + "!")


def test_unknown_user_does_not_verify(store: CredentialStore, password: str) -> None:
    assert not store.verify("mallory", password)


def test_empty_password_does_not_verify(store: CredentialStore, password: str) -> None:
    store.add("alice", password)

    assert not store.verify("alice", "")


def test_duplicate_user_is_refused(store: CredentialStore, password: str) -> None:
    store.add("alice", password)

    with pytest.raises(UserExistsError, match="alice"):
        store.add("alice", "another password")


def test_duplicate_keeps_the_first_password(store: CredentialStore, password: str) -> None:
    store.add("alice", password)
    with pytest.raises(UserExistsError):
        store.add("alice", "another password")

    assert store.verify("alice", password)


def test_empty_password_is_refused(store: CredentialStore) -> None:
    with pytest.raises(ValueError, match="empty"):
        store.add("alice", "")


def test_too_long_password_is_refused(store: CredentialStore) -> None:
    with pytest.raises(ValueError, match="password"):
        store.add("alice", "x" * (MAX_PASSWORD_LENGTH + 1))


@pytest.mark.parametrize("username", ["", "a" * (MAX_USERNAME_LENGTH + 1), "line\nbreak"])
def test_unusable_username_is_refused(store: CredentialStore, username: str, password: str) -> None:
    with pytest.raises(ValueError, match="username"):
        store.add(username, password)


def test_removed_user_no_longer_verifies(store: CredentialStore, password: str) -> None:
    store.add("alice", password)

    store.remove("alice")

    assert not store.verify("alice", password)


def test_removing_an_unknown_user_is_refused(store: CredentialStore) -> None:
    with pytest.raises(UnknownUserError, match="mallory"):
        store.remove("mallory")


def test_usernames_lists_every_user_sorted(store: CredentialStore, password: str) -> None:
    for username in ("carol", "alice", "bob"):
        store.add(username, password)

    assert store.usernames() == ["alice", "bob", "carol"]


def test_users_outlive_the_store(fast_settings: Settings, password: str) -> None:
    with CredentialStore.from_settings(fast_settings) as first:
        first.add("alice", password)

    with CredentialStore.from_settings(fast_settings) as second:
        assert second.verify("alice", password)


def test_stored_hash_is_argon2id_with_the_configured_cost(
    store: CredentialStore, fast_settings: Settings, database_path: Path, password: str
) -> None:
    store.add("alice", password)

    parameters = extract_parameters(stored_hash(database_path, "alice"))

    assert (parameters.type.name, parameters.memory_cost, parameters.time_cost) == (
        "ID",
        fast_settings.argon2_memory_cost,
        fast_settings.argon2_time_cost,
    )


def test_plain_password_is_nowhere_in_the_database_files(
    fast_settings: Settings, database_path: Path, password: str
) -> None:
    with CredentialStore.from_settings(fast_settings) as store:
        store.add("alice", password)
        files = sorted(database_path.parent.iterdir())
        contents = b"".join(path.read_bytes() for path in files)

    assert password.encode() not in contents


def test_hash_with_outdated_cost_is_replaced_on_success(
    fast_settings: Settings, database_path: Path, password: str
) -> None:
    with CredentialStore.from_settings(fast_settings) as cheap:
        cheap.add("alice", password)
    dearer = fast_settings.model_copy(update={"argon2_time_cost": 3})

    with CredentialStore.from_settings(dearer) as store:
        store.verify("alice", password)

    assert extract_parameters(stored_hash(database_path, "alice")).time_cost == 3


def test_verify_is_safe_from_many_threads(store: CredentialStore, password: str) -> None:
    store.add("alice", password)
    attempts = [password, "wrong"] * 8

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda attempt: store.verify("alice", attempt), attempts))

    assert results == [attempt == password for attempt in attempts]
