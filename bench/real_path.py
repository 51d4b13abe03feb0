"""The real path: sign-ups/s against the raw argon2id rate of the same cores, in one run.

Every sign-up costs one argon2id check in auth-service, so on a given machine
no path can sign up more people a second than its cores verify hashes. Each
round measures, one phase after the other and nothing else loading the
machine:

- the raw rate: one thread per core verifying auth-service's own hash in a
  loop (:func:`bench.raw_rate.raw_rate`);
- sign-ups through user-service to the real auth-service, from wrk at
  ``connections`` connections (``POST /accounts``, a new username each);
- sign-ups through frontend-web's form (``GET /``, then ``POST /signup``),
  from ``connections`` Python browsers (``bench/form_load.py``);
- the seed's design (``bench/seed_design.py``) in front of the same auth-service.

The services are the shipped commands, over SQLite files in a scratch folder,
each caller registered with the service it calls before it starts
(:mod:`bench.clients`): user-service and the seed's design with auth-service,
frontend-web and the load with user-service.
auth-service knows every username the load will send (seeded before it starts,
see :class:`bench.credentials.Credentials`), so every answer expected is a
``201`` with a new account: a ``409`` or a ``401`` shows as an error. The
ratio of a path is taken round by round (the path's rate over that round's raw
rate) and the report gives the median.
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.clients import LOAD, SEED_DESIGN, add_client
from bench.commands import (
    auth_environment,
    auth_service_command,
    bench_environment,
    frontend_web_command,
    seed_command,
    user_environment,
    user_service_command,
)
from bench.credentials import Credentials
from bench.load import GRACE_SECONDS, Load, drive, measurement, run_generator
from bench.raw_rate import raw_rate
from bench.runs import Series, turned
from bench.services import keep_log_tails, running

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from bench.load import Measurement
    from bench.raw_rate import RawRate
    from bench.runs import RunConfig
    from bench.services import Service

USER_SERVICE_PATH = "user-service → auth-service"
FORM_PATH = "frontend-web form → user-service → auth-service"
SEED_PATH = "seed design → auth-service"
PATHS = (USER_SERVICE_PATH, FORM_PATH, SEED_PATH)
AUTH, USER, FRONTEND, SEED = "auth-service", "user-service", "frontend-web", "seed-design"
SEED_MARGIN = 3.0
"""Usernames seeded per phase and load thread, over what the raw rate could sign up..."""
SEED_FLOOR_RATE = 2500.0
"""...or at least this many a second: a service that refuses fast uses a name per refusal."""


@dataclass
class RealPathResults:
    """What the real path measured.

    Attributes:
        parameters: The argon2 parameters of auth-service's hashes.
        raw: The raw rate, one a round.
        series: Per path, one measurement a round.
        seeded: Users seeded into auth-service.
        seed_seconds: Time taken to seed them.
        connections: Concurrent connections (or browsers) of each load.
        workers: The processes each service served with, by name.
    """

    parameters: str
    raw: list[RawRate]
    series: dict[str, Series]
    seeded: int
    seed_seconds: float
    connections: int
    workers: dict[str, int] = field(default_factory=dict)

    @property
    def raw_rate(self) -> float:
        """Median raw verifications/s over the rounds."""
        return statistics.median(raw.rate for raw in self.raw) if self.raw else 0.0

    @property
    def raw_cpu_ms(self) -> float | None:
        """Median CPU time of one raw verification, in milliseconds."""
        values = [ms for raw in self.raw if (ms := raw.cpu_ms_per_verify) is not None]
        return statistics.median(values) if values else None

    def ratio(self, path: str) -> float:
        """Median over the rounds of the path's sign-ups/s over the round's raw rate."""
        ratios = [
            run.rate / raw.rate
            for run, raw in zip(self.series[path].measurements, self.raw, strict=False)
            if raw.rate
        ]
        return statistics.median(ratios) if ratios else 0.0


@dataclass(frozen=True)
class _Phase:
    """One load on one path, with usernames of its own."""

    path: str
    prefix: str
    seconds: int
    results: Path
    threads: int


@dataclass
class _Plan:
    """Every phase of the scenario: the warm-ups, then the measured ones round by round."""

    warmups: list[_Phase] = field(default_factory=list)
    rounds: list[list[_Phase]] = field(default_factory=list)

    @property
    def phases(self) -> list[_Phase]:
        return [*self.warmups, *(phase for phases in self.rounds for phase in phases)]


def real_path(config: RunConfig) -> RealPathResults:
    """Measure sign-ups/s on each path and the raw argon2id rate, round after round.

    Args:
        config: How to run.

    Returns:
        The measurements.
    """
    folder = config.scratch / "real-path"
    results = config.run_folder / "real-path"
    credentials = Credentials.create(folder / "auth-service.db", results / "users-add.log")
    # The first round's raw rate comes first: it sizes the seeding, which must precede the start.
    raws = [raw_rate(credentials.password_hash, config.seconds)]
    plan = _plan(config, results)
    ceiling = max(SEED_MARGIN * raws[0].rate, SEED_FLOOR_RATE)
    per_phase = math.ceil(ceiling * (config.seconds + 1))
    seeding_started = time.perf_counter()
    seeded = credentials.add(_usernames(plan, per_phase))
    seed_seconds = time.perf_counter() - seeding_started
    tokens = _register_clients(credentials.database, folder / "user-service.db", folder)
    auth = auth_service_command(credentials.database, folder / "auth-service.log")
    user = user_service_command(
        auth.base_url,
        folder / "user-service.db",
        folder / f"{USER}.log",
        auth_token=tokens.user_service,
    )
    frontend = frontend_web_command(
        user.base_url, folder / "frontend-web.log", user_service_token=tokens.frontend_web
    )
    seed = seed_command(
        ["--auth-url", auth.base_url, "--auth-token-file", str(tokens.seed_design)],
        folder / f"{SEED}.log",
    )
    series = {path: Series(path) for path in PATHS}
    with running(auth, user, frontend, seed) as started:
        services = {service.name: service for service in started}
        try:
            for phase in plan.warmups:
                _run_phase(config, phase, services, tokens.load)
            for round_number, phases in enumerate(plan.rounds):
                if round_number:
                    raws.append(raw_rate(credentials.password_hash, config.seconds))
                for phase in turned(phases, round_number):
                    series[phase.path].measurements.append(
                        _run_phase(config, phase, services, tokens.load)
                    )
            for path, name in ((USER_SERVICE_PATH, USER), (FORM_PATH, FRONTEND), (SEED_PATH, SEED)):
                series[path].peak_rss_bytes = services[name].peak_rss_bytes()
            workers = {name: service.workers() for name, service in services.items()}
        finally:
            keep_log_tails(started, results)
    return RealPathResults(
        parameters=credentials.parameters,
        raw=raws,
        series=series,
        seeded=seeded,
        seed_seconds=seed_seconds,
        connections=config.connections,
        workers=workers,
    )


@dataclass(frozen=True)
class _Tokens:
    """The files of the callers' client tokens: each issued by the service it calls."""

    user_service: Path
    seed_design: Path
    frontend_web: Path
    load: Path


def _register_clients(auth_database: Path, user_database: Path, folder: Path) -> _Tokens:
    """Register every caller with the service it calls, over that service's database."""
    auth, user = auth_environment(auth_database), user_environment(user_database)
    return _Tokens(
        user_service=add_client(AUTH, USER, auth, folder / f"{USER}-for-{AUTH}"),
        seed_design=add_client(AUTH, SEED_DESIGN, auth, folder / f"{SEED_DESIGN}-for-{AUTH}"),
        frontend_web=add_client(USER, FRONTEND, user, folder / f"{FRONTEND}-for-{USER}"),
        load=add_client(USER, LOAD, user, folder / f"{LOAD}-for-{USER}"),
    )


def _plan(config: RunConfig, results: Path) -> _Plan:
    wrk_threads = min(config.wrk_threads, config.connections) if config.generator == "wrk" else 1
    numbers = itertools.count()

    def phase(path: str, seconds: int, name: str) -> _Phase:
        # Lowercase letters and digits: canonical already, so answers echo the name as sent.
        return _Phase(
            path,
            f"r{next(numbers)}x",
            seconds,
            results / f"{_SLUGS[path]}-{name}.json",
            1 if path == FORM_PATH else wrk_threads,
        )

    plan = _Plan()
    if config.warmup_seconds:
        plan.warmups = [phase(path, config.warmup_seconds, "warmup") for path in PATHS]
    plan.rounds = [
        [phase(path, config.seconds, str(round_number)) for path in PATHS]
        for round_number in range(config.rounds)
    ]
    return plan


def _usernames(plan: _Plan, per_phase: int) -> Iterator[str]:
    """Yield every username the phases may send: ``{prefix}t{thread}n{k}``, as loads name them."""
    for phase in plan.phases:
        for thread in range(phase.threads):
            for number in range(1, per_phase + 1):
                yield f"{phase.prefix}t{thread}n{number}"


def _run_phase(
    config: RunConfig, phase: _Phase, services: dict[str, Service], load_token: Path
) -> Measurement:
    auth, user = services[AUTH], services[USER]
    if phase.path != FORM_PATH:
        to_user_service = phase.path == USER_SERVICE_PATH
        target = user if to_user_service else services[SEED]
        load = Load(
            kind="create",
            connections=config.connections,
            seconds=phase.seconds,
            generator=config.generator,
            wrk_threads=config.wrk_threads,
            prefix=phase.prefix,
            # The seed's design asks its callers for no token, as the seed did.
            token_file=load_token if to_user_service else None,
        )
        return drive(target.base_url, load, results=phase.results, watch=[target, auth])
    frontend = services[FRONTEND]
    command = [
        sys.executable,
        "-m",
        "bench.form_load",
        "--url",
        frontend.base_url,
        "--connections",
        str(config.connections),
        "--seconds",
        str(phase.seconds),
        "--prefix",
        phase.prefix,
        "--results",
        str(phase.results),
    ]
    run = run_generator(
        command,
        bench_environment(),
        name="bench.form_load",
        timeout=phase.seconds + GRACE_SECONDS,
        results=phase.results,
        watch=[frontend, user, auth],
    )
    return measurement(run, "python")


_SLUGS = {USER_SERVICE_PATH: "user-service", FORM_PATH: "form", SEED_PATH: "seed-design"}
