"""Settings: the environment, the database URL and the defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auth_service.database_url import sqlite_path
from auth_service.settings import Settings


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
def test_default_database_is_under_var_in_the_working_directory() -> None:
    assert Settings().database_path == Path("var/auth-service.db")


@pytest.mark.usefixtures("clean_environment")
def test_hash_workers_default_to_the_cpu_cores() -> None:
    assert Settings().hash_workers == (os.cpu_count() or 1)


def test_settings_are_read_from_prefixed_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_SERVICE_ARGON2_TIME_COST", "7")

    assert Settings().argon2_time_cost == 7


def test_relative_sqlite_url_gives_a_relative_path() -> None:
    assert sqlite_path("sqlite:///var/auth.db") == Path("var/auth.db")


def test_four_slashes_give_an_absolute_path() -> None:
    assert sqlite_path("sqlite:////srv/auth.db") == Path("/srv/auth.db")


@pytest.mark.parametrize(
    "url",
    ["postgresql://user:secret@db/auth", "mysql://db/auth", "var/auth.db"],
)
def test_other_schemes_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match="AUTH_SERVICE_DATABASE_URL"):
        Settings(database_url=url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_sqlite_url_without_a_file_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="AUTH_SERVICE_DATABASE_URL"):
        Settings(database_url=url)


def test_refusal_does_not_repeat_the_url() -> None:
    with pytest.raises(ValueError, match="postgresql") as refusal:
        Settings(database_url="postgresql://user:secret@db/auth")

    assert "secret" not in str(refusal.value)
