"""``serve --workers N``: every scrape of ``/metrics`` reports the requests of all the workers.

Which worker served a request is read from prometheus-client's files in the
multiprocess directory, one per worker and named by its pid: a scrape cannot
tell, and the JSON logs do not carry the pid. Requests go out concurrently, each
on a new connection, so that the kernel hands some of them to each worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import (
    HOST,
    free_port,
    run_process,
    venv_command,
    wait_for_startups,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterable, Iterator, Mapping
    from pathlib import Path

    from prometheus_client.metrics_core import Metric

pytestmark = pytest.mark.e2e

WORKERS = 2
BATCH = 20
MAX_BATCHES = 10
DIRECTORY_PREFIX = "servicekit-metrics-"
LIVEZ = {"method": "GET", "route": "/livez", "status": "200"}


@contextlib.contextmanager
def user_service(
    tmp_path: Path, *, workers: int, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``user-service serve --workers N``, its ``TMPDIR`` in ``tmp_path / "tmp"``.

    Yields:
        Its base URL once every worker is up, and the process.
    """
    (tmp_path / "tmp").mkdir()
    port = free_port()
    log_path = tmp_path / "user-service.log"
    command = [venv_command("user-service"), "serve", "--host", HOST, "--port", str(port)]
    with run_process(
        [*command, "--workers", str(workers)],
        port=port,
        env={
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}",
            "TMPDIR": str(tmp_path / "tmp"),
            **(env or {}),
        },
        log_path=log_path,
    ) as process:
        wait_for_startups(log_path, workers, process)
        yield f"http://{HOST}:{port}", process


async def _get_all(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=15, limits=limits) as http:
        return await asyncio.gather(*(http.get(url) for _ in range(count)))


def get_concurrently(url: str, count: int) -> list[httpx.Response]:
    """``GET url`` ``count`` times at once, each on a new connection; all must answer 200."""
    responses = asyncio.run(_get_all(url, count))
    assert [response.status_code for response in responses] == [200] * count
    return responses


def sample_value(families: Iterable[Metric], name: str, labels: dict[str, str]) -> float:
    values = [
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    return sum(values)


def scraped_livez(response: httpx.Response) -> tuple[float, float]:
    """``/livez`` in one scrape: requests counted, and requests timed."""
    families = list(text_string_to_metric_families(response.text))
    timed = {"method": "GET", "route": "/livez"}
    return (
        sample_value(families, "http_requests_total", LIVEZ),
        sample_value(families, "http_request_duration_seconds_count", timed),
    )


def requests_by_worker(directory: Path, route: str) -> dict[str, float]:
    """The requests for ``route`` that each worker has counted in its file, by pid."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        labels = {**LIVEZ, "route": route}
        counts[path.stem.removeprefix("counter_")] = sample_value(
            families, "http_requests_total", labels
        )
    return counts


def wait_for_counted(directory: Path, route: str, total: int) -> dict[str, float]:
    """Wait until the workers' files count ``total`` requests for ``route``; return them by pid.

    A worker counts a request just after answering it, so a client may be faster.
    """
    deadline = time.monotonic() + 5
    while sum((counts := requests_by_worker(directory, route)).values()) < total:
        if time.monotonic() > deadline:
            pytest.fail(f"the workers counted {counts} requests for {route}, not {total}")
        time.sleep(0.02)
    assert sum(counts.values()) == total
    return counts


def serving(counts: dict[str, float]) -> int:
    """How many workers have counted requests."""
    return sum(count > 0 for count in counts.values())


def metrics_directories(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob(f"{DIRECTORY_PREFIX}*"))


def spread_livez_over_workers(base_url: str, directory: Path) -> int:
    """Send batches of ``/livez`` until two workers have served some; return how many were sent."""
    sent = 0
    for _ in range(MAX_BATCHES):
        get_concurrently(f"{base_url}/livez", BATCH)
        sent += BATCH
        counts = wait_for_counted(directory, "/livez", sent)
        if serving(counts) == WORKERS:
            return sent
    pytest.fail(f"one worker served all {sent} requests: {counts}")


def test_every_scrape_reports_the_requests_of_all_workers(tmp_path: Path) -> None:
    with user_service(tmp_path, workers=WORKERS) as (base_url, process):
        (directory,) = metrics_directories(tmp_path)
        sent = spread_livez_over_workers(base_url, directory)

        scrapes: list[tuple[float, float]] = []
        scraped_by: dict[str, float] = {}
        for batch in range(1, MAX_BATCHES + 1):
            scrapes += map(scraped_livez, get_concurrently(f"{base_url}/metrics", BATCH // 2))
            scraped_by = wait_for_counted(directory, "/metrics", batch * BATCH // 2)
            if serving(scraped_by) == WORKERS:
                break

        assert serving(scraped_by) == WORKERS, f"one worker answered every scrape: {scraped_by}"
        assert scrapes == [(sent, sent)] * len(scrapes)

    assert process.returncode == 0
    assert not directory.exists()
    assert metrics_directories(tmp_path) == []


def test_an_operators_multiprocess_directory_is_used_and_kept(tmp_path: Path) -> None:
    theirs = tmp_path / "operator-metrics"
    theirs.mkdir()

    env = {"PROMETHEUS_MULTIPROC_DIR": str(theirs)}

    with user_service(tmp_path, workers=WORKERS, env=env) as (base_url, _):
        assert metrics_directories(tmp_path) == []
        get_concurrently(f"{base_url}/livez", BATCH)
        wait_for_counted(theirs, "/livez", BATCH)
        scrapes = [scraped_livez(httpx.get(f"{base_url}/metrics")) for _ in range(5)]

    assert scrapes == [(BATCH, BATCH)] * 5
    assert list(theirs.glob("counter_*.db")) != []


def test_one_worker_keeps_its_metrics_in_memory(tmp_path: Path) -> None:
    with user_service(tmp_path, workers=1) as (base_url, _):
        get_concurrently(f"{base_url}/livez", BATCH)
        response = httpx.get(f"{base_url}/metrics")

        assert scraped_livez(response) == (BATCH, BATCH)
        # Only the in-process registry tells when each series was created.
        assert 'http_requests_created{method="GET",route="/livez",status="200"}' in response.text
        assert list((tmp_path / "tmp").iterdir()) == []
