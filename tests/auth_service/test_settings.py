"""Settings: the environment, the database URL and the defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auth_service.settings import Settings
from auth_service.store import PostgresCredentialStore, SqliteCredentialStore, store_from_settings
from servicekit.cpus import usable_cores
from servicekit.database_url import PostgresUrl, SqliteUrl


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTH_SERVICE_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_environment")
def test_defaults_are_the_owasp_argon2id_minimum() -> None:
    settings = Settings()

    assert (
        settings.argon2_time_cost,
        settings.argon2_memory_cost,
        settings.argon2_parallelism,
    ) == (2, 19456, 1)


@pytest.mark.usefixtures("clean_environment")
def test_default_database_is_a_sqlite_file_under_var() -> None:
    assert Settings().database == SqliteUrl(Path("var/auth-service.db"))


@pytest.mark.usefixtures("clean_environment")
def test_hash_workers_default_to_the_cores_this_process_may_use() -> None:
    assert Settings().hash_workers == usable_cores()


@pytest.mark.usefixtures("clean_environment")
def test_default_limits() -> None:
    settings = Settings()

    assert (
        settings.max_pending_hashes,
        settings.target_queue_delay_seconds,
        settings.lockout_threshold,
        settings.lockout_window_seconds,
    ) == (256, 1.0, 10, 900)


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("AUTH_SERVICE_ARGON2_TIME_COST", "7", "argon2_time_cost", 7),
        ("AUTH_SERVICE_MAX_PENDING_HASHES", "3", "max_pending_hashes", 3),
        ("AUTH_SERVICE_TARGET_QUEUE_DELAY_SECONDS", "0.25", "target_queue_delay_seconds", 0.25),
        ("AUTH_SERVICE_LOCKOUT_THRESHOLD", "5", "lockout_threshold", 5),
        ("AUTH_SERVICE_LOCKOUT_WINDOW_SECONDS", "0.5", "lockout_window_seconds", 0.5),
    ],
)
def test_settings_are_read_from_prefixed_environment_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    assert getattr(Settings(), field) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_pending_hashes", 0),
        ("target_queue_delay_seconds", 0),
        ("hash_workers", 0),
        ("lockout_threshold", 0),
        ("lockout_window_seconds", 0),
        ("argon2_memory_cost", 4),
    ],
)
def test_out_of_range_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Settings.model_validate({field: value})


def test_sqlite_url_gives_a_sqlite_store() -> None:
    settings = Settings(database_url="sqlite:////srv/auth.db")

    assert settings.database == SqliteUrl(Path("/srv/auth.db"))
    assert isinstance(store_from_settings(settings), SqliteCredentialStore)


def test_postgres_url_gives_a_postgres_store() -> None:
    settings = Settings(database_url="postgresql://auth@db/auth")

    assert settings.database == PostgresUrl("postgresql://auth@db/auth")
    assert isinstance(store_from_settings(settings), PostgresCredentialStore)


@pytest.mark.parametrize("url", ["mysql://db/auth", "var/auth.db", "sqlite:///:memory:"])
def test_unsupported_urls_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match="AUTH_SERVICE_DATABASE_URL"):
        Settings(database_url=url)


def test_refusal_does_not_repeat_the_url() -> None:
    with pytest.raises(ValueError, match="mysql") as refusal:
        Settings(database_url="mysql://user:secret@db/auth")

    assert "secret" not in str(refusal.value)


def test_repr_does_not_show_the_database_url() -> None:
    settings = Settings(database_url="postgresql://user:secret@db/auth")

    assert "secret" not in repr(settings)


@pytest.mark.usefixtures("clean_environment")
def test_database_limits_default_to_five_seconds_and_ten_connections() -> None:
    settings = Settings()

    assert (settings.database_timeout_seconds, settings.postgres_max_connections) == (5.0, 10)


@pytest.mark.parametrize(
    "url",
    ["postgresql://user:hunter2@db:port/auth", "postgresql://user:hun@ter2@db/auth"],
    ids=["port-not-a-number", "unescaped-at"],
)
def test_a_postgres_url_the_driver_would_misread_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ValueError, match="AUTH_SERVICE_DATABASE_URL") as refusal:
        Settings(database_url=url)

    assert "hun" not in str(refusal.value)
    assert "ter2" not in str(refusal.value)
