"""Prometheus metrics of one app: its requests, and its calls to the services it depends on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.responses import Response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from fastapi.telemetry import TelemetryConfig
    from prometheus_client.metrics_core import Metric

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""``FastAPI(telemetry=...)`` of every service, observed through these metrics and its logs.

FastAPI's own OpenTelemetry support looks the global providers up on every
request, even when none is configured: about 6% of user-service's CPU under load.
"""


def multiprocess_mode() -> bool:
    """Whether prometheus-client keeps values in the files of ``PROMETHEUS_MULTIPROC_DIR``.

    prometheus-client decides once, when it is imported, from that variable.
    """
    return values.ValueClass is not values.MutexValue


class _AllProcesses:
    """The metrics named ``names``, summed over the files of every process."""

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names
        self._files = MultiProcessCollector(None)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        collected: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]
        return [metric for metric in collected if metric.name in self._names]


class Metrics:
    """The metrics of one app, in a registry of its own (so several apps can share a process).

    In multiprocess mode (``serve --workers N`` with N > 1, see
    :func:`servicekit.cli.serve`), every worker writes its values to its own
    files in ``PROMETHEUS_MULTIPROC_DIR`` and :meth:`response` renders the sum
    over all of them, files of exited workers included, so counters never go
    back. There are only counters and histograms, so no files need removing
    when a worker exits (``mark_process_dead`` concerns live gauges only). One
    ``Metrics`` per process in that mode: two would write the same series.

    Attributes:
        registry: Where the metrics are kept.
        requests: Requests served, by method, route template and status.
        request_seconds: Time to serve a request, by method and route template.
        upstream_calls: Calls to another service, by upstream and outcome.
        upstream_seconds: Time of a call to another service, by upstream.
    """

    def __init__(self) -> None:
        """Create the metrics in a new registry."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests served.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to serve an HTTP request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "upstream_requests",
            "Calls to other services.",
            ["upstream", "outcome"],
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "upstream_request_duration_seconds",
            "Time of a call to another service.",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._names = frozenset(
            metric.name
            for collector in (
                self.requests,
                self.request_seconds,
                self.upstream_calls,
                self.upstream_seconds,
            )
            for metric in collector.describe()
        )
        self._multiprocess = multiprocess_mode()

    def response(self) -> Response:
        """Render every metric in the Prometheus text format, summed over all workers if several."""
        if self._multiprocess:
            registry = CollectorRegistry()
            registry.register(_AllProcesses(self._names))
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
