"""A benchmark run: its settings, each variant's measurements round by round, and their medians.

Each comparison runs its variants interleaved within a round (the order turning
by one each round, see :func:`turned`, so that none always runs first or last)
and keeps every round in a :class:`Series`, to report the median.
"""

from __future__ import annotations

import secrets
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from bench.load import Generator, Load, Measurement

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

_T = TypeVar("_T")


@dataclass(frozen=True)
class RunConfig:
    """How to run the benchmarks.

    Attributes:
        seconds: Length of each measurement.
        rounds: Rounds of each comparison on the real path (and of the contract
            suite and auth-service alone); the report gives the median.
        stand_in_rounds: Rounds of the scenarios behind a stand-in auth-service
            (designs, growth).
        spike_seconds: Length of each rate of the open-loop spike.
        connections: Concurrent connections of the load.
        generator: The load generator.
        wrk_threads: wrk's threads.
        sizes: Accounts stored beforehand, for the growth measurement.
        smoke: A quick run that only checks that everything works.
        warmup_seconds: Load run, and not measured, on a service that has just started.
        run_folder: Where raw results go (load generator output, log tails).
        scratch: Where databases and full logs go; removed after the run.
    """

    seconds: int
    rounds: int
    stand_in_rounds: int
    spike_seconds: float
    connections: int
    generator: Generator
    wrk_threads: int
    sizes: tuple[int, ...]
    smoke: bool
    warmup_seconds: int
    run_folder: Path
    scratch: Path

    def load(
        self,
        kind: str,
        *,
        seconds: int | None = None,
        stored: int = 0,
        token_file: Path | None = None,
    ) -> Load:
        """Return a load of ``kind`` (``"create"`` or ``"get"``) with this run's settings.

        ``token_file`` holds the client token every request presents.
        """
        return Load(
            kind="create" if kind == "create" else "get",
            connections=self.connections,
            seconds=self.seconds if seconds is None else seconds,
            generator=self.generator,
            wrk_threads=self.wrk_threads,
            # Lowercase letters and digits only: canonical already, so answers echo it as sent.
            prefix=f"b{secrets.token_hex(4)}x",
            stored=stored,
            token_file=token_file,
        )


@dataclass
class Series:
    """The measurements of one variant, one a round.

    Attributes:
        label: What the report calls the variant.
        measurements: One a round.
        peak_rss_bytes: Peak resident memory of the service over all rounds.
    """

    label: str
    measurements: list[Measurement] = field(default_factory=list)
    peak_rss_bytes: int = 0

    @property
    def rate(self) -> float:
        """Median good answers per second."""
        return median([m.rate for m in self.measurements])

    @property
    def p50_ms(self) -> float:
        """Median of the rounds' median latencies."""
        return median([m.p50_ms for m in self.measurements])

    @property
    def p99_ms(self) -> float:
        """Median of the rounds' 99th-percentile latencies."""
        return median([m.p99_ms for m in self.measurements])

    @property
    def errors(self) -> int:
        """Errors of all rounds, added up."""
        return sum(m.errors for m in self.measurements)

    @property
    def generator_cpu(self) -> float:
        """The load generator's largest share of the machine's CPU over the rounds."""
        return max((m.generator_cpu for m in self.measurements), default=0.0)

    def service_cpu(self, name: str) -> float:
        """Median CPU of the service ``name`` over the rounds, in cores."""
        return median([m.service_cpu.get(name, 0.0) for m in self.measurements])

    def cpu_ms_per_request(self, name: str) -> float | None:
        """Median CPU time the service ``name`` spent per good answer, in milliseconds."""
        values = [
            m.service_cpu[name] / m.rate * 1000
            for m in self.measurements
            if m.rate and name in m.service_cpu
        ]
        return statistics.median(values) if values else None

    @property
    def other_cpu(self) -> float:
        """Largest CPU used by other processes during a round, in cores."""
        return max((m.other_cpu for m in self.measurements), default=0.0)

    @property
    def example(self) -> str:
        """The first failed answer of any round."""
        return next((m.example for m in self.measurements if m.example), "")

    def to_json(self) -> dict[str, object]:
        """Return the series as plain JSON data."""
        return {
            "label": self.label,
            "requests_per_second": self.rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
            "peak_rss_bytes": self.peak_rss_bytes,
            "generator_cpu": self.generator_cpu,
            "other_cpu": self.other_cpu,
            "rounds": [m.to_json() for m in self.measurements],
        }


def median(values: list[float]) -> float:
    """Return the median of ``values``, 0 if there are none."""
    return statistics.median(values) if values else 0.0


def turned(items: Sequence[_T], by: int) -> list[_T]:
    """Return ``items`` turned left by ``by``, so each round starts with another one."""
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]
