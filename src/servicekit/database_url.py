"""Database URLs: ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``postgresql://...``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

POSTGRES_SCHEMES = ("postgresql", "postgres")
_SQLITE_PREFIX = "sqlite:///"


@dataclass(frozen=True)
class SqliteUrl:
    """A SQLite database file; relative paths are relative to the working directory."""

    path: Path


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL server; ``dsn`` is the URL as given, for the driver."""

    dsn: str


def parse_database_url(url: str, *, setting: str) -> SqliteUrl | PostgresUrl:
    """Parse a database URL.

    As in SQLAlchemy, ``sqlite:///relative/path`` is relative to the working
    directory and ``sqlite:////absolute/path`` is absolute.

    Args:
        url: The URL.
        setting: The name of the setting it came from, for error messages.

    Returns:
        What the URL names.

    Raises:
        ValueError: If the URL names neither a SQLite file nor a PostgreSQL
            server. The message names the setting but not the URL, which may
            hold a password.
    """
    scheme = urlsplit(url).scheme
    if scheme in POSTGRES_SCHEMES:
        return PostgresUrl(url)
    if scheme != "sqlite":
        found = f"the scheme {scheme!r}" if scheme else "no scheme"
        msg = f"{setting} must be sqlite:///PATH or postgresql://HOST/DATABASE; it has {found}"
        raise ValueError(msg)
    path = url.removeprefix(_SQLITE_PREFIX)
    if not url.startswith(_SQLITE_PREFIX) or not path or path == ":memory:":
        msg = f"{setting} must name a database file, such as sqlite:///var/data.db"
        raise ValueError(msg)
    if "?" in path:
        msg = f"{setting} does not support query parameters for SQLite"
        raise ValueError(msg)
    return SqliteUrl(Path(path))
