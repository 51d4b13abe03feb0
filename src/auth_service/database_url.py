"""The SQLAlchemy-style ``sqlite:///`` URL that locates the credential database."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

DATABASE_URL_SETTING = "AUTH_SERVICE_DATABASE_URL"
_SQLITE_PREFIX = "sqlite:///"
_EXAMPLE = "sqlite:///var/auth-service.db"


def sqlite_path(url: str) -> Path:
    """Return the file that a ``sqlite:///`` URL names.

    As in SQLAlchemy, ``sqlite:///relative/path`` is relative to the working
    directory and ``sqlite:////absolute/path`` is absolute.

    Args:
        url: The URL, as given in ``AUTH_SERVICE_DATABASE_URL``.

    Returns:
        The path of the SQLite file, relative or absolute as the URL says.

    Raises:
        ValueError: If the URL is not a ``sqlite:///`` URL naming a file. The
            message names the setting but not the URL, which may hold a secret.
    """
    scheme = urlsplit(url).scheme
    if scheme != "sqlite":
        found = f"the scheme {scheme!r}" if scheme else "no scheme"
        msg = f"{DATABASE_URL_SETTING} must be a sqlite:/// URL such as {_EXAMPLE}; it has {found}"
        raise ValueError(msg)
    path = url.removeprefix(_SQLITE_PREFIX)
    if not url.startswith(_SQLITE_PREFIX) or not path or path == ":memory:":
        msg = f"{DATABASE_URL_SETTING} must name a database file, such as {_EXAMPLE}"
        raise ValueError(msg)
    if "?" in path:
        msg = f"{DATABASE_URL_SETTING} does not support query parameters"
        raise ValueError(msg)
    return Path(path)
