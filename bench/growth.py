"""user-service's cost as stored accounts grow: ``POST`` and ``GET /accounts`` at 10k, 100k, 1M.

Behind a stand-in auth-service without latency, so that the store's cost is not
hidden behind it, user-service as shipped serves copies of SQLite files seeded
beforehand with that many accounts (:func:`seed_database`) and with the load's
client token, registered once per file with ``user-service clients add``.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bench.clients import LOAD, add_client, stand_in_token
from bench.commands import stand_in_command, user_environment, user_service_command
from bench.load import drive
from bench.runs import Series, turned
from bench.services import keep_log_tails, running
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from pathlib import Path

    from bench.runs import RunConfig

GROWTH_LATENCY_MS = 0


@dataclass
class GrowthResults:
    """What the growth scenario measured.

    Attributes:
        create: ``POST /accounts`` per number of accounts stored beforehand.
        get: ``GET /accounts/{id}`` per number of accounts stored beforehand.
        seed_seconds: Time taken to store the accounts, per number.
    """

    create: dict[int, Series]
    get: dict[int, Series]
    seed_seconds: dict[int, float]


def growth(config: RunConfig) -> GrowthResults:
    """Measure user-service over databases already holding ``config.sizes`` accounts.

    Each round starts user-service afresh on a copy of a database seeded once
    (one service per size, measured in turn), so every round sees the same
    number of accounts; auth-service is a
    stand-in without latency, so that the store's cost is not hidden behind it.

    Args:
        config: How to run.

    Returns:
        The measurements.
    """
    folder = config.scratch / "growth"
    folder.mkdir(parents=True, exist_ok=True)
    seeded: dict[int, Path] = {}
    seed_seconds: dict[int, float] = {}
    load_tokens: dict[int, Path] = {}
    for size in config.sizes:
        seeding_started = time.perf_counter()
        seeded[size] = seed_database(folder / f"seeded-{size}.db", size)
        seed_seconds[size] = time.perf_counter() - seeding_started
        load_tokens[size] = _register_load(seeded[size], folder / f"{LOAD}-for-seeded-{size}")
    auth_token = stand_in_token(folder / "user-service-for-auth-service")
    create = {size: Series(f"POST /accounts, {size:,} stored") for size in config.sizes}
    get = {size: Series(f"GET /accounts/{{id}}, {size:,} stored") for size in config.sizes}
    results = config.run_folder / "growth"
    with running(stand_in_command(GROWTH_LATENCY_MS, folder, tokens=[auth_token])) as (auth,):
        for round_number in range(config.stand_in_rounds):
            commands = []
            for size in config.sizes:
                working = folder / f"working-{size}.db"
                for stale in folder.glob(f"{working.name}*"):
                    stale.unlink()
                shutil.copyfile(seeded[size], working)
                commands.append(
                    user_service_command(
                        auth.base_url,
                        working,
                        folder / f"user-service-{size}.log",
                        auth_token=auth_token,
                    )
                )
            with running(*commands) as started:
                services = dict(zip(config.sizes, started, strict=True))
                try:
                    for size in turned(config.sizes, round_number):
                        service = services[size]
                        if config.warmup_seconds:
                            drive(
                                service.base_url,
                                config.load(
                                    "create",
                                    seconds=config.warmup_seconds,
                                    token_file=load_tokens[size],
                                ),
                                results=results / f"warmup-{size}-{round_number}.json",
                            )
                        for kind, series in (("create", create), ("get", get)):
                            series[size].measurements.append(
                                drive(
                                    service.base_url,
                                    config.load(kind, stored=size, token_file=load_tokens[size]),
                                    results=results / f"{kind}-{size}-{round_number}.json",
                                    watch=[service, auth],
                                )
                            )
                        peak = service.peak_rss_bytes()
                        for series in (create, get):
                            series[size].peak_rss_bytes = max(series[size].peak_rss_bytes, peak)
                finally:
                    keep_log_tails(started, results)
    return GrowthResults(create, get, seed_seconds)


def seed_database(path: Path, count: int) -> Path:
    """Create user-service's schema in ``path`` and store ``count`` accounts in one transaction.

    The accounts have ids 1..count and usernames ``seeded`` followed by the id on
    seven digits, which the ``GET`` load checks; in that order the unique index
    on usernames is filled from left to right, which keeps a million rows to
    seconds.

    Args:
        path: The database file; replaced if it exists.
        count: How many accounts to store.

    Returns:
        ``path``.
    """
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    asyncio.run(_create_schema(path))
    created_at = datetime.now(UTC).isoformat(timespec="microseconds")
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO accounts (id, username, created_at) VALUES (?, ?, ?)",
            ((number, f"seeded{number:07d}", created_at) for number in range(1, count + 1)),
        )
        connection.execute("COMMIT")
        # Fold the WAL into the file, so that copying the file alone copies everything.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _register_load(database: Path, token_file: Path) -> Path:
    """Register the load with user-service over ``database``; fold the WAL into the file after."""
    add_client("user-service", LOAD, user_environment(database), token_file)
    with closing(sqlite3.connect(database, isolation_level=None)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return token_file


async def _create_schema(path: Path) -> None:
    store = SqliteAccountStore(path)
    await store.open()
    await store.close()
