"""Overload: an open-loop spike of sign-ups at 1x, 2x, 4x and 10x capacity.

Capacity is the raw argon2id rate of this machine's cores, measured at the
start of the scenario on auth-service's own hash (nothing else running). Then
user-service and the real auth-service, as shipped, take one open-loop load a
rate (``bench/open_loop.py``): requests sent on schedule whatever the answers,
each given up by its caller after the client timeout. 1x comes first: the
baseline of memory. The services run throughout; each phase restarts the
peak-memory count of their process trees.

For each rate it reports goodput (``201`` and ``409`` answered per second,
counted over the window once its first second has filled the queues), the
answers by status, the p99 of admitted sign-ups and of rejections, the ``503``
answers without a valid ``Retry-After``, the peak memory of each service,
whether the sign-up sent after the spike (the probe) was served, and whether
user-service's database agrees with the answers: every ``201``'s account there
exactly once, none for a request answered otherwise.

Every username sent is known to auth-service (seeded before it starts), so an
admitted sign-up is a ``201``. user-service is a registered client of
auth-service, and the generator one of user-service (:mod:`bench.clients`).
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.clients import LOAD, add_client
from bench.commands import (
    auth_environment,
    auth_service_command,
    bench_environment,
    user_environment,
    user_service_command,
)
from bench.credentials import Credentials
from bench.load import GRACE_SECONDS, run_generator
from bench.open_loop import ANSWERED, CONNECTION_ERROR, GAVE_UP, probe_username, username
from bench.raw_rate import raw_rate
from bench.services import keep_log_tails, running

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from bench.raw_rate import RawRate
    from bench.runs import RunConfig
    from bench.services import Service

MULTIPLES = (1, 2, 4, 10)
"""Offered load, in multiples of capacity; the first is the baseline."""
SMOKE_BASE_RATE = 5.0
"""A smoke run's 1x, in requests/s: tiny, whatever the capacity."""
RAW_SECONDS = 5.0
CLIENT_TIMEOUT_SECONDS = 10.0
SMOKE_CLIENT_TIMEOUT_SECONDS = 5.0
DRAIN_SECONDS = 1.0
SMOKE_DRAIN_SECONDS = 0.5
RAMP_SECONDS = 1.0
"""The start of each window not counted in goodput: the queues fill meanwhile."""
ADMITTED = frozenset({201, 409})
REFUSALS = frozenset({429, 503})
AUTH, USER = "auth-service", "user-service"
SERVICES = (USER, AUTH)


@dataclass
class Accounts:
    """What user-service's database holds for a phase's usernames, against the answers.

    Attributes:
        created: Requests answered ``201`` (the probe included).
        lost: Of those, accounts missing from the database.
        doubled: Usernames stored more than once.
        answered_otherwise: Accounts whose request was answered neither ``201`` nor ``409``.
        given_up: Accounts whose caller gave up or lost its connection (allowed:
            the service may finish a request nobody waits for any more).
        unknown: Accounts under the phase's prefix for no request sent.
    """

    created: int = 0
    lost: int = 0
    doubled: int = 0
    answered_otherwise: int = 0
    given_up: int = 0
    unknown: int = 0

    @property
    def consistent(self) -> bool:
        """Whether nothing was lost, doubled, or created against its answer."""
        return not (self.lost or self.doubled or self.answered_otherwise or self.unknown)


@dataclass
class SpikePhase:
    """One rate of the spike.

    Attributes:
        multiple: The offered load, in multiples of capacity.
        offered: Requests per second sent.
        seconds: The window.
        prefix: The prefix of its usernames.
        requests: Requests sent.
        statuses: Answers by status.
        gave_up: Requests their caller gave up on (client timeout).
        connection_errors: Requests that failed without an answer otherwise.
        goodput: ``201`` and ``409`` answered per second, after the ramp.
        admitted: ``201`` and ``409`` answers in all.
        admitted_p50_ms: Median latency of those, from when each was due.
        admitted_p99_ms: Their 99th percentile.
        rejected_p99_ms: 99th percentile latency of every other answer.
        missing_retry_after: ``503`` answers without a valid ``Retry-After``.
        wrong_bodies: ``201`` answers whose body did not name the username sent.
        lag_p99_ms: How late the generator sent its requests, 99th percentile.
        probe_status: The answer to the sign-up sent after the spike, if any.
        probe_outcome: What became of it (answered, gave up, connection error).
        probe_ms: Its latency.
        peak_rss_bytes: Peak resident memory of each service's process tree.
        peak_reset: Whether the peaks were restarted for this phase (else: since start).
        generator_cpu: The generator's share of the machine's CPU.
        service_cpu: CPU of each service, in cores, over the phase.
        accounts: The database against the answers, once the services stopped.
        created: Usernames answered ``201``.
        taken: Usernames answered ``409``.
        not_created: Usernames answered otherwise.
        abandoned: Usernames whose caller gave up or lost its connection.
    """

    multiple: float
    offered: float
    seconds: float
    prefix: str
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    gave_up: int = 0
    connection_errors: int = 0
    goodput: float = 0.0
    admitted: int = 0
    admitted_p50_ms: float | None = None
    admitted_p99_ms: float | None = None
    rejected_p99_ms: float | None = None
    missing_retry_after: int = 0
    wrong_bodies: int = 0
    lag_p99_ms: float = 0.0
    probe_status: int | None = None
    probe_outcome: str = ""
    probe_ms: float = 0.0
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)
    peak_reset: bool = False
    generator_cpu: float = 0.0
    service_cpu: dict[str, float] = field(default_factory=dict)
    accounts: Accounts | None = None
    created: list[str] = field(default_factory=list, repr=False)
    taken: list[str] = field(default_factory=list, repr=False)
    not_created: list[str] = field(default_factory=list, repr=False)
    abandoned: list[str] = field(default_factory=list, repr=False)

    @property
    def unexpected(self) -> int:
        """Requests not answered ``201``, ``409``, ``429`` or ``503`` with ``Retry-After``."""
        others = sum(
            count for status, count in self.statuses.items() if status not in ADMITTED | REFUSALS
        )
        return others + self.missing_retry_after + self.gave_up + self.connection_errors

    @property
    def probe_served(self) -> bool:
        """Whether the sign-up sent after the spike got its ``201``."""
        return self.probe_status == 201  # noqa: PLR2004

    def to_json(self) -> dict[str, object]:
        """Return the phase as plain JSON data, without the lists of usernames."""
        return {
            name: value
            for name, value in vars(self).items()
            if name not in {"created", "taken", "not_created", "abandoned", "accounts"}
        } | {
            "accounts": vars(self.accounts) if self.accounts else None,
            "unexpected": self.unexpected,
        }


@dataclass
class SpikeResults:
    """What the spike measured.

    Attributes:
        raw: The raw argon2id rate, measured first.
        parameters: The argon2 parameters of auth-service's hashes.
        capacity: The raw rate: sign-ups/s the cores could check at most.
        base_rate: The 1x rate sent (capacity; a tiny rate in a smoke run).
        phases: One a rate, in the order run.
        client_timeout: Seconds after which a caller gave up.
        drain: Seconds between a phase's last answer and its probe.
        ramp: Seconds at the start of each window not counted in goodput.
    """

    raw: RawRate
    parameters: str
    capacity: float
    base_rate: float
    phases: list[SpikePhase]
    client_timeout: float
    drain: float
    ramp: float

    def phase(self, multiple: float) -> SpikePhase | None:
        """Return the phase at ``multiple`` times capacity, if it ran."""
        return next((phase for phase in self.phases if phase.multiple == multiple), None)

    def ideal(self, offered: float) -> float:
        """Return the most goodput possible at ``offered`` requests/s: min(offered, capacity)."""
        return min(offered, self.capacity)


def spike(config: RunConfig) -> SpikeResults:
    """Measure capacity, then send the spike's rates to user-service and auth-service.

    Args:
        config: How to run.

    Returns:
        The measurements.
    """
    folder = config.scratch / "spike"
    results = config.run_folder / "spike"
    timing = _Timing(
        client_timeout=SMOKE_CLIENT_TIMEOUT_SECONDS if config.smoke else CLIENT_TIMEOUT_SECONDS,
        drain=SMOKE_DRAIN_SECONDS if config.smoke else DRAIN_SECONDS,
        ramp=min(RAMP_SECONDS, config.spike_seconds / 5),
    )
    credentials = Credentials.create(folder / "auth-service.db", results / "users-add.log")
    raw = raw_rate(credentials.password_hash, 1.0 if config.smoke else RAW_SECONDS)
    base_rate = SMOKE_BASE_RATE if config.smoke else raw.rate
    # Rounded as the generator is told it, so that both count the same requests.
    phases = [
        SpikePhase(multiple, round(base_rate * multiple, 3), config.spike_seconds, f"s{multiple}x")
        for multiple in MULTIPLES
    ]
    credentials.add(_usernames(phases))
    database = folder / "user-service.db"
    auth_token = add_client(
        AUTH, USER, auth_environment(credentials.database), folder / f"{USER}-for-{AUTH}"
    )
    load_token = add_client(USER, LOAD, user_environment(database), folder / f"{LOAD}-for-{USER}")
    auth = auth_service_command(credentials.database, folder / "auth-service.log")
    user = user_service_command(
        auth.base_url, database, folder / f"{USER}.log", auth_token=auth_token
    )
    with running(auth, user) as started:
        services = {service.name: service for service in started}
        try:
            for phase in phases:
                _run(phase, services, results, timing, load_token)
        finally:
            keep_log_tails(started, results)
    stored = _stored_usernames(database)
    for phase in phases:
        mine = {name: count for name, count in stored.items() if name.startswith(phase.prefix)}
        phase.accounts = check_accounts(phase, mine)
    return SpikeResults(
        raw=raw,
        parameters=credentials.parameters,
        capacity=raw.rate,
        base_rate=base_rate,
        phases=phases,
        client_timeout=timing.client_timeout,
        drain=timing.drain,
        ramp=timing.ramp,
    )


def _usernames(phases: list[SpikePhase]) -> Iterator[str]:
    for phase in phases:
        for number in range(1, round(phase.offered * phase.seconds) + 1):
            yield username(phase.prefix, number)
        yield probe_username(phase.prefix)


@dataclass(frozen=True)
class _Timing:
    client_timeout: float
    drain: float
    ramp: float


def _run(
    phase: SpikePhase,
    services: dict[str, Service],
    results: Path,
    timing: _Timing,
    load_token: Path,
) -> None:
    reset = [services[name].reset_peak_rss() for name in SERVICES]
    phase.peak_reset = all(reset)
    output = results / f"{phase.multiple:g}x.json"
    command = [
        sys.executable,
        "-m",
        "bench.open_loop",
        "--url",
        services[USER].base_url,
        "--rate",
        f"{phase.offered:.3f}",
        "--seconds",
        repr(phase.seconds),
        "--prefix",
        phase.prefix,
        "--timeout",
        f"{timing.client_timeout:g}",
        "--drain",
        f"{timing.drain:g}",
        "--results",
        str(output),
        "--token-file",
        str(load_token),
    ]
    run = run_generator(
        command,
        bench_environment(),
        name="bench.open_loop",
        # The window, its stragglers, the drain and the probe: each at most a client timeout.
        timeout=phase.seconds + 2 * timing.client_timeout + timing.drain + GRACE_SECONDS,
        results=output,
        watch=[services[USER], services[AUTH]],
    )
    phase.peak_rss_bytes = {name: services[name].peak_rss_bytes() for name in SERVICES}
    phase.generator_cpu = run.generator_cpu
    phase.service_cpu = run.service_cpu
    summarise(phase, run.raw, timing.ramp)


def summarise(phase: SpikePhase, raw: dict[str, Any], ramp: float) -> None:
    """Fill ``phase`` in from what ``bench/open_loop.py`` wrote.

    Args:
        phase: The phase, its rate and prefix set.
        raw: The generator's results.
        ramp: Seconds at the start of the window not counted in goodput.
    """
    requests: list[dict[str, Any]] = raw["requests"]
    admitted: list[float] = []
    rejected: list[float] = []
    counted = 0
    for number, request in enumerate(requests, start=1):
        status = _file(phase, username(phase.prefix, number), request)
        if status is None:
            continue
        phase.statuses[status] = phase.statuses.get(status, 0) + 1
        if status in ADMITTED:
            admitted.append(request["seconds"])
            counted += ramp <= request["due"] + request["seconds"] <= phase.seconds
        else:
            rejected.append(request["seconds"])
        phase.wrong_bodies += status == 201 and not request["body_ok"]  # noqa: PLR2004
        phase.missing_retry_after += status == 503 and not request["retry_after"]  # noqa: PLR2004
    phase.requests = len(requests)
    phase.statuses = dict(sorted(phase.statuses.items()))
    phase.admitted = len(admitted)
    phase.goodput = counted / (phase.seconds - ramp) if phase.seconds > ramp else 0.0
    phase.admitted_p50_ms = _percentile_ms(admitted, 50)
    phase.admitted_p99_ms = _percentile_ms(admitted, 99)
    phase.rejected_p99_ms = _percentile_ms(rejected, 99)
    phase.lag_p99_ms = _percentile_ms([request["lag"] for request in requests], 99) or 0.0
    probe = raw["probe"]
    phase.probe_outcome = str(probe["outcome"])
    phase.probe_status = _file(phase, probe_username(phase.prefix), probe, count=False)
    phase.probe_ms = float(probe["seconds"]) * 1000


def _file(
    phase: SpikePhase, name: str, request: dict[str, Any], *, count: bool = True
) -> int | None:
    """File ``name`` under what became of its request; return the answer's status, if any.

    Args:
        phase: The phase.
        name: The request's username.
        request: What the generator wrote of it.
        count: Whether to count a request without an answer in the phase's totals
            (the probe is reported on its own).
    """
    if request["outcome"] != ANSWERED:
        if count:
            phase.gave_up += request["outcome"] == GAVE_UP
            phase.connection_errors += request["outcome"] == CONNECTION_ERROR
        phase.abandoned.append(name)
        return None
    status = int(request["status"])
    {201: phase.created, 409: phase.taken}.get(status, phase.not_created).append(name)
    return status


def check_accounts(phase: SpikePhase, stored: dict[str, int]) -> Accounts:
    """Compare user-service's accounts under the phase's prefix with the answers.

    Args:
        phase: The phase, summarised.
        stored: Accounts per username under the phase's prefix, in the database.

    Returns:
        What agrees and what does not.
    """
    sent = {*phase.created, *phase.taken, *phase.not_created, *phase.abandoned}
    return Accounts(
        created=len(phase.created),
        lost=sum(1 for name in phase.created if name not in stored),
        doubled=sum(1 for count in stored.values() if count > 1),
        answered_otherwise=sum(1 for name in phase.not_created if name in stored),
        given_up=sum(1 for name in phase.abandoned if name in stored),
        unknown=sum(1 for name in stored if name not in sent),
    )


def _stored_usernames(database: Path) -> dict[str, int]:
    """Return user-service's accounts: how many there are of each username."""
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT username, count(*) FROM accounts GROUP BY username"
        ).fetchall()
    return {str(name): int(count) for name, count in rows}


def _percentile_ms(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1] * 1000
