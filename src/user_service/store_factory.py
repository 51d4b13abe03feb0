"""Choose the account store that a database URL names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servicekit.database_url import SqliteUrl, parse_database_url
from user_service.postgres_store import PostgresAccountStore
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from user_service.accounts import AccountStore, IdempotencyPolicy

DATABASE_URL_SETTING = "USER_SERVICE_DATABASE_URL"


def account_store_from_url(url: str, *, policy: IdempotencyPolicy | None = None) -> AccountStore:
    """Build, without opening it, the store for a database URL.

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
    target = parse_database_url(url, setting=DATABASE_URL_SETTING)
    if isinstance(target, SqliteUrl):
        return SqliteAccountStore(target.path, policy=policy)
    return PostgresAccountStore(target.dsn, policy=policy)
