"""A real PostgreSQL server for tests, one fresh schema per test.

Each service's tests name the variable that gives the server
(``USER_SERVICE_TEST_POSTGRES_URL``, ``AUTH_SERVICE_TEST_POSTGRES_URL``; default
``postgresql://127.0.0.1:5432/test``). Without a reachable server the tests
that need it skip and say why; under ``CI=true`` they fail instead, since CI
must run every store behaviour against PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest

DEFAULT_URL = "postgresql://127.0.0.1:5432/test"


def postgres_url(variable: str) -> str:
    """Return the URL of the test server, failing or skipping if it cannot be reached.

    Args:
        variable: The environment variable that may give the URL.
    """
    url = os.environ.get(variable, DEFAULT_URL)
    try:
        asyncio.run(_ping(url))
    except (OSError, asyncpg.PostgresError) as error:
        reason = f"PostgreSQL at {url} is unreachable ({error}); set {variable}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return url


async def _ping(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=3)
    await connection.close()


def new_schema(url: str) -> str:
    """Create a schema with a unique name on the server and return its name."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(url, f'CREATE SCHEMA "{name}"'))
    return name


def drop_schema(url: str, name: str) -> None:
    """Drop a schema made by :func:`new_schema`, with everything in it."""
    asyncio.run(_execute(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url, timeout=3)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
