"""Prometheus metrics of one app: its requests, and its calls to the services it depends on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one app, in a registry of its own (so several apps can share a process).

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

    def response(self) -> Response:
        """Render every metric in the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
