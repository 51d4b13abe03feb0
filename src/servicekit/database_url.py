"""Database URLs, and the settings that name a service's database.

A URL is ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or
``postgresql://...``. It may hold a password, so no message and no ``repr``
ever shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

POSTGRES_SCHEMES = ("postgresql", "postgres")
_SQLITE_PREFIX = "sqlite:///"

DEFAULT_TIMEOUT_SECONDS = 5.0
"""How long a database call may wait, unless a service's settings say otherwise."""

DEFAULT_POSTGRES_MAX_CONNECTIONS = 10
"""The size of a PostgreSQL pool, unless a service's settings say otherwise."""


@dataclass(frozen=True)
class SqliteUrl:
    """A SQLite database file; relative paths are relative to the working directory."""

    path: Path


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL server; ``dsn`` is the URL as given, for the driver (never in its ``repr``)."""

    dsn: str = field(repr=False)


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
            server. The message names the setting but not the URL, nor any
            part of it, which may hold a password.
    """
    try:
        parts = urlsplit(url)
        if parts.scheme in POSTGRES_SCHEMES:
            _ = parts.port  # raises if the port is not a number
    except ValueError:
        # urlsplit's own messages quote the part they could not read.
        msg = f"{setting} is not a URL that can be read (is its port a number?)"
        raise ValueError(msg) from None
    if parts.scheme in POSTGRES_SCHEMES:
        if parts.netloc.count("@") > 1:
            # The driver would read the user and host elsewhere than here, and quote them.
            msg = f"{setting} has an '@' in its user or password: write it %40"
            raise ValueError(msg)
        return PostgresUrl(url)
    if parts.scheme != "sqlite":
        found = f"the scheme {parts.scheme!r}" if parts.scheme else "no scheme"
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


def database_url_field(default: str) -> Any:  # noqa: ANN401 (a pydantic field, typed by its annotation)
    """Declare a service's ``database_url`` setting, kept out of its ``repr``.

    Args:
        default: The URL used when the environment gives none.
    """
    return Field(default=default, repr=False)


class DatabaseSettings(BaseSettings):
    """The database settings every service has; its settings class derives from this one.

    A service names its own default with :func:`database_url_field`. Inputs
    are never shown in validation errors, since a URL may hold a password.

    Attributes:
        database_url: ``sqlite:///relative/path``, ``sqlite:////absolute/path``
            or ``postgresql://user:password@host/database`` (``<PREFIX>DATABASE_URL``).
            Never shown in ``repr`` or error messages.
        database_timeout_seconds: How long a database call may wait: SQLite's
            busy timeout; PostgreSQL's connect, pool and statement timeouts;
            and the time ``/readyz`` allows for its check.
        postgres_max_connections: Connections in the PostgreSQL pool of each process.
    """

    model_config = SettingsConfigDict(frozen=True, hide_input_in_errors=True)

    database_url: str = database_url_field("sqlite:///var/service.db")
    database_timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0)
    postgres_max_connections: int = Field(default=DEFAULT_POSTGRES_MAX_CONNECTIONS, ge=1)

    @classmethod
    def database_url_setting(cls) -> str:
        """The variable that gives ``database_url``, such as ``AUTH_SERVICE_DATABASE_URL``."""
        return f"{cls.model_config.get('env_prefix', '')}DATABASE_URL".upper()

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        parse_database_url(value, setting=cls.database_url_setting())
        return value

    @property
    def database(self) -> SqliteUrl | PostgresUrl:
        """The database that ``database_url`` names."""
        return parse_database_url(self.database_url, setting=self.database_url_setting())
