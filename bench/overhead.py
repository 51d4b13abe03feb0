"""user-service's own overhead: ``POST /accounts`` behind a stand-in auth-service (``designs``).

user-service as shipped, the seed's design (a synchronous HTTP call inside
``async def``, ``bench/seed_design.py``) and the no-hop limit (the seed's app
with a dict store and no call), each behind a stand-in auth-service that says
yes after 0 or 10 ms (``bench/stand_in_auth.py``) to the callers it knows:
user-service and the seed's design, each with a token of its own
(:mod:`bench.clients`). The load presents a token registered with
user-service; the seed's design asks for none, as the seed did. Every service
runs for the whole scenario; the variants take turns within each round. It
also counts the ``201`` answers user-service sent and the accounts on disk once
it stopped.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.clients import LOAD, add_client, stand_in_token
from bench.commands import seed_command, stand_in_command, user_environment, user_service_command
from bench.load import drive
from bench.runs import Series, turned
from bench.seed_design import SYNC_CLIENT
from bench.services import Command, keep_log_tails, running

if TYPE_CHECKING:
    from pathlib import Path

    from bench.runs import RunConfig

USER_SERVICE = "user-service"
SEED_DESIGN = "seed design"
NO_HOP_LIMIT = "no-hop limit"
AUTH_LATENCIES_MS = (0, 10)


@dataclass(frozen=True)
class Variant:
    """A design at an auth latency (``None``: no hop, so no latency)."""

    design: str
    latency_ms: int | None

    @property
    def label(self) -> str:
        """The variant's name in the report."""
        if self.latency_ms is None:
            return f"{self.design} (no hop)"
        return f"{self.design} @ {self.latency_ms} ms auth"


@dataclass
class DesignResults:
    """What the designs scenario measured.

    Attributes:
        series: Each variant's measurements.
        acknowledged: Per auth latency, the 201s user-service sent (warm-up included).
        stored: Per auth latency, the accounts in user-service's database once stopped.
        sync_client: The synchronous HTTP client of the seed's design.
        user_service_workers: The worker processes user-service started.
    """

    series: dict[Variant, Series]
    acknowledged: dict[int, int]
    stored: dict[int, int]
    sync_client: str = SYNC_CLIENT
    user_service_workers: int = 1


def designs(config: RunConfig) -> DesignResults:
    """Measure ``POST /accounts`` on user-service, the seed's design and the no-hop limit.

    Every service runs for the whole scenario; the variants take turns within
    each round.

    Args:
        config: How to run.

    Returns:
        The measurements.
    """
    folder = config.scratch / "designs"
    user_token = stand_in_token(folder / "user-service-for-auth-service")
    seed_token = stand_in_token(folder / "seed-design-for-auth-service")
    stand_ins = {
        latency: stand_in_command(latency, folder, tokens=[user_token, seed_token])
        for latency in AUTH_LATENCIES_MS
    }
    databases = {latency: folder / f"user-service-{latency}ms.db" for latency in AUTH_LATENCIES_MS}
    load_tokens = {
        latency: add_client(
            USER_SERVICE,
            LOAD,
            user_environment(databases[latency]),
            folder / f"{LOAD}-for-user-service-{latency}ms",
        )
        for latency in AUTH_LATENCIES_MS
    }
    commands: dict[Variant, Command] = {}
    for latency in AUTH_LATENCIES_MS:
        auth_url = stand_ins[latency].base_url
        commands[Variant(USER_SERVICE, latency)] = user_service_command(
            auth_url,
            databases[latency],
            folder / f"user-service-{latency}ms.log",
            auth_token=user_token,
        )
        commands[Variant(SEED_DESIGN, latency)] = seed_command(
            ["--auth-url", auth_url, "--auth-token-file", str(seed_token)],
            folder / f"seed-{latency}ms.log",
        )
    commands[Variant(NO_HOP_LIMIT, None)] = seed_command(["--no-hop"], folder / "limit.log")
    variants = list(commands)
    series = {variant: Series(variant.label) for variant in variants}
    acknowledged = dict.fromkeys(AUTH_LATENCIES_MS, 0)
    with running(*stand_ins.values(), *commands.values()) as started:
        auth = dict(zip(AUTH_LATENCIES_MS, started[: len(stand_ins)], strict=True))
        services = dict(zip(variants, started[len(stand_ins) :], strict=True))
        try:
            for round_number in range(-1 if config.warmup_seconds else 0, config.stand_in_rounds):
                for variant in turned(variants, round_number):
                    watch = [services[variant]]
                    if variant.latency_ms is not None:
                        watch.append(auth[variant.latency_ms])
                    warmup = round_number < 0
                    token = (
                        load_tokens[variant.latency_ms]
                        if variant.design == USER_SERVICE and variant.latency_ms is not None
                        else None
                    )
                    measurement = drive(
                        services[variant].base_url,
                        config.load(
                            "create",
                            seconds=config.warmup_seconds if warmup else None,
                            token_file=token,
                        ),
                        results=config.run_folder
                        / "designs"
                        / f"{_slug(variant.label)}-{'warmup' if warmup else round_number}.json",
                        watch=watch,
                    )
                    if variant.design == USER_SERVICE and variant.latency_ms is not None:
                        acknowledged[variant.latency_ms] += measurement.good
                    if not warmup:
                        series[variant].measurements.append(measurement)
            for variant, service in services.items():
                series[variant].peak_rss_bytes = service.peak_rss_bytes()
            workers = services[Variant(USER_SERVICE, AUTH_LATENCIES_MS[0])].workers()
        finally:
            keep_log_tails(started, config.run_folder / "designs")
    stored = {latency: _count_accounts(path) for latency, path in databases.items()}
    return DesignResults(series, acknowledged, stored, user_service_workers=workers)


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _count_accounts(database: Path) -> int:
    with closing(sqlite3.connect(database)) as connection:
        (count,) = connection.execute("SELECT count(*) FROM accounts").fetchone()
    return int(count)
