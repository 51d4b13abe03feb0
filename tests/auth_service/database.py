"""Looking into a test database directly, past the store, to check what it holds."""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg

from servicekit.database_url import SqliteUrl, parse_database_url


async def raw_rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    """Run ``query`` on the database of ``database_url`` and return its rows."""
    database = parse_database_url(database_url, setting="test")
    if isinstance(database, SqliteUrl):
        connection = sqlite3.connect(database.path)
        try:
            return [tuple(row) for row in connection.execute(query).fetchall()]
        finally:
            connection.close()
    pg = await asyncpg.connect(database.dsn)
    try:
        return [tuple(row) for row in await pg.fetch(query)]
    finally:
        await pg.close()


async def raw_execute(database_url: str, statement: str) -> None:
    """Run ``statement`` on the database of ``database_url``, committing it."""
    database = parse_database_url(database_url, setting="test")
    if isinstance(database, SqliteUrl):
        connection = sqlite3.connect(database.path, isolation_level=None)
        try:
            connection.execute(statement)
        finally:
            connection.close()
        return
    pg = await asyncpg.connect(database.dsn)
    try:
        await pg.execute(statement)
    finally:
        await pg.close()


async def stored_hash(database_url: str, username: str) -> str:
    """Return the password hash stored for ``username``."""
    database = parse_database_url(database_url, setting="test")
    if isinstance(database, SqliteUrl):
        connection = sqlite3.connect(database.path)
        try:
            row = connection.execute(
                "SELECT password_hash FROM credentials WHERE username = ?", (username,)
            ).fetchone()
        finally:
            connection.close()
        value: str = row[0]
        return value
    pg = await asyncpg.connect(database.dsn)
    try:
        found: str = await pg.fetchval(
            "SELECT password_hash FROM credentials WHERE username = $1", username
        )
    finally:
        await pg.close()
    return found
