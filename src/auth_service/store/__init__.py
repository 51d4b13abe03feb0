"""Where the credentials are kept: a SQLite file by default, or PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auth_service.store.base import (
    Admitted,
    Attempt,
    CredentialStore,
    CredentialStoreError,
    LockedOut,
    StoreUnavailableError,
    UnknownUser,
    UnknownUserError,
    UserExistsError,
)
from auth_service.store.postgres import PostgresCredentialStore
from auth_service.store.sqlite import SqliteCredentialStore
from servicekit.database_url import SqliteUrl

if TYPE_CHECKING:
    from auth_service.settings import Settings

__all__ = [
    "Admitted",
    "Attempt",
    "CredentialStore",
    "CredentialStoreError",
    "LockedOut",
    "PostgresCredentialStore",
    "SqliteCredentialStore",
    "StoreUnavailableError",
    "UnknownUser",
    "UnknownUserError",
    "UserExistsError",
    "store_from_settings",
]


def store_from_settings(settings: Settings) -> CredentialStore:
    """Return the store that ``settings.database_url`` names, not yet opened.

    Args:
        settings: Gives the database URL and its timeouts.

    Returns:
        A :class:`SqliteCredentialStore` or a :class:`PostgresCredentialStore`.
    """
    database = settings.database
    if isinstance(database, SqliteUrl):
        return SqliteCredentialStore(
            database.path, timeout_seconds=settings.database_timeout_seconds
        )
    return PostgresCredentialStore(
        database.dsn,
        timeout_seconds=settings.database_timeout_seconds,
        max_connections=settings.postgres_max_connections,
    )
