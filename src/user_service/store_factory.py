"""Choose the account store that the settings' database URL names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servicekit.database_url import (
    DEFAULT_POSTGRES_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT_SECONDS,
    SqliteUrl,
    parse_database_url,
)
from user_service.accounts import IdempotencyPolicy
from user_service.postgres_store import PostgresAccountStore
from user_service.settings import Settings
from user_service.sqlite_store import DEFAULT_MAX_QUEUED_CREATES, SqliteAccountStore

if TYPE_CHECKING:
    from servicekit.database_url import PostgresUrl
    from user_service.accounts import AccountStore


def account_store_from_settings(settings: Settings) -> AccountStore:
    """Build, without opening it, the store that ``settings.database_url`` names.

    Args:
        settings: Give the database URL, its time limit and pool size, the
            SQLite store's queue bound and the idempotency keys' lifetimes.

    Returns:
        A :class:`SqliteAccountStore` or a :class:`PostgresAccountStore`.
    """
    return _store_for(
        settings.database,
        policy=IdempotencyPolicy(ttl=settings.idempotency_ttl, lease=settings.idempotency_lease),
        timeout_seconds=settings.database_timeout_seconds,
        max_connections=settings.postgres_max_connections,
        max_queued_creates=settings.sqlite_max_queued_creates,
    )


def account_store_from_url(url: str, *, policy: IdempotencyPolicy | None = None) -> AccountStore:
    """Build, without opening it, the store for a database URL, its limits at their defaults.

    :func:`account_store_from_settings` honours every database setting.

    Args:
        url: ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or
            ``postgresql://...``.
        policy: How long idempotency keys live.

    Returns:
        A :class:`SqliteAccountStore` or a :class:`PostgresAccountStore`.

    Raises:
        ValueError: If the URL names neither; the message names
            ``USER_SERVICE_DATABASE_URL`` but not the URL, which may hold a password.
    """
    return _store_for(
        parse_database_url(url, setting=Settings.database_url_setting()),
        policy=policy,
        timeout_seconds=DEFAULT_TIMEOUT_SECONDS,
        max_connections=DEFAULT_POSTGRES_MAX_CONNECTIONS,
        max_queued_creates=DEFAULT_MAX_QUEUED_CREATES,
    )


def _store_for(
    database: SqliteUrl | PostgresUrl,
    *,
    policy: IdempotencyPolicy | None,
    timeout_seconds: float,
    max_connections: int,
    max_queued_creates: int,
) -> AccountStore:
    if isinstance(database, SqliteUrl):
        return SqliteAccountStore(
            database.path,
            policy=policy,
            timeout_seconds=timeout_seconds,
            max_queued_creates=max_queued_creates,
        )
    return PostgresAccountStore(
        database.dsn,
        policy=policy,
        timeout_seconds=timeout_seconds,
        max_connections=max_connections,
    )
