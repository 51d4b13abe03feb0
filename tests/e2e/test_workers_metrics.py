"""``serve --workers N``: every scrape of ``/metrics`` reports the requests of all the workers.

Which worker served a request is read from prometheus-client's files in the
multiprocess directory, one per worker and named by its pid: a scrape cannot
tell, and the JSON logs do not carry the pid. The workers share one listening
socket and whichever is awake first accepts a connection, so requests go out
concurrently, each on a new connection, in batches until each worker has served
some. A worker that uvicorn's supervisor replaces leaves its files behind, and
the totals keep its counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.worker_processes import (
    sample_value,
    serving,
    wait_for_counted,
    wait_until,
    worker_pids,
)
from tests.support.servers import wait_for_startups
from tests.support.system import USER_SERVICE, ServiceProcess, verified

if TYPE_CHECKING:
    import ssl
    import subprocess
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from tests.support.tls import TestTls

pytestmark = pytest.mark.e2e

WORKERS = 2
BATCH = 20
MAX_BATCHES = 10
DIRECTORY_PREFIX = "servicekit-metrics-"
LIVEZ = {"method": "GET", "route": "/livez", "status": "200"}
METRICS = {**LIVEZ, "route": "/metrics"}


@pytest.fixture
def verify(test_tls: TestTls) -> ssl.SSLContext:
    """What the scrapes trust: the test CA, whose certificate user-service serves."""
    return verified(test_tls)


@contextlib.contextmanager
def user_service(
    tmp_path: Path,
    tls: TestTls,
    *,
    workers: int | None,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``user-service serve --workers N`` (no option if ``None``), ``TMPDIR`` in ``tmp_path``.

    It serves HTTPS with the test certificate.

    Yields:
        Its base URL once every worker is up, and the process.
    """
    (tmp_path / "tmp").mkdir()
    service = ServiceProcess(
        USER_SERVICE,
        {
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}",
            "TMPDIR": str(tmp_path / "tmp"),
            **(env or {}),
        },
        tmp_path / "user-service.log",
        tls,
        options=("--workers", str(workers)) if workers else (),
        workers=workers or 1,
    )
    with service.running() as process:
        yield service.url, process


async def _get_all(url: str, count: int, verify: ssl.SSLContext) -> list[httpx.Response]:
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=15, limits=limits, verify=verify) as http:
        return await asyncio.gather(*(http.get(url) for _ in range(count)))


def get_concurrently(url: str, count: int, verify: ssl.SSLContext) -> list[httpx.Response]:
    """``GET url`` ``count`` times at once, each on a new connection; all must answer 200."""
    responses = asyncio.run(_get_all(url, count, verify))
    assert [response.status_code for response in responses] == [200] * count
    return responses


def scraped_livez(response: httpx.Response) -> tuple[float, float]:
    """``/livez`` in one scrape: requests counted, and requests timed."""
    families = list(text_string_to_metric_families(response.text))
    timed = {"method": "GET", "route": "/livez"}
    return (
        sample_value(families, "http_requests_total", LIVEZ),
        sample_value(families, "http_request_duration_seconds_count", timed),
    )


def metrics_directories(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob(f"{DIRECTORY_PREFIX}*"))


def spread_livez_over_workers(base_url: str, directory: Path, verify: ssl.SSLContext) -> int:
    """Send batches of ``/livez`` until two workers have served some; return how many were sent."""
    sent = 0
    for _ in range(MAX_BATCHES):
        get_concurrently(f"{base_url}/livez", BATCH, verify)
        sent += BATCH
        counts = wait_for_counted(directory, LIVEZ, sent)
        if serving(counts) == WORKERS:
            return sent
    pytest.fail(f"one worker served all {sent} requests: {counts}")


def test_every_scrape_reports_the_requests_of_all_workers(
    tmp_path: Path, test_tls: TestTls, verify: ssl.SSLContext
) -> None:
    with user_service(tmp_path, test_tls, workers=WORKERS) as (base_url, process):
        (directory,) = metrics_directories(tmp_path)
        sent = spread_livez_over_workers(base_url, directory, verify)

        scrapes: list[tuple[float, float]] = []
        scraped_by: dict[int, float] = {}
        for batch in range(1, MAX_BATCHES + 1):
            scrapes += map(
                scraped_livez, get_concurrently(f"{base_url}/metrics", BATCH // 2, verify)
            )
            scraped_by = wait_for_counted(directory, METRICS, batch * BATCH // 2)
            if serving(scraped_by) == WORKERS:
                break

        assert serving(scraped_by) == WORKERS, f"one worker answered every scrape: {scraped_by}"
        assert scrapes == [(sent, sent)] * len(scrapes)

    assert process.returncode == 0
    assert not directory.exists()
    assert metrics_directories(tmp_path) == []


def test_an_operators_multiprocess_directory_is_used_and_kept(
    tmp_path: Path, test_tls: TestTls, verify: ssl.SSLContext
) -> None:
    theirs = tmp_path / "operator-metrics"
    theirs.mkdir()

    env = {"PROMETHEUS_MULTIPROC_DIR": str(theirs)}

    with user_service(tmp_path, test_tls, workers=WORKERS, env=env) as (base_url, _):
        assert metrics_directories(tmp_path) == []
        get_concurrently(f"{base_url}/livez", BATCH, verify)
        wait_for_counted(theirs, LIVEZ, BATCH)
        scrapes = [scraped_livez(httpx.get(f"{base_url}/metrics", verify=verify)) for _ in range(5)]

    assert scrapes == [(BATCH, BATCH)] * 5
    assert list(theirs.glob("counter_*.db")) != []


def test_one_worker_by_default_keeps_its_metrics_in_memory(
    tmp_path: Path, test_tls: TestTls, verify: ssl.SSLContext
) -> None:
    with user_service(tmp_path, test_tls, workers=None) as (base_url, process):
        assert worker_pids(process.pid) == []  # no supervisor: the process serves itself
        get_concurrently(f"{base_url}/livez", BATCH, verify)
        response = httpx.get(f"{base_url}/metrics", verify=verify)

        assert scraped_livez(response) == (BATCH, BATCH)
        # Only the in-process registry tells when each series was created.
        assert 'http_requests_created{method="GET",route="/livez",status="200"}' in response.text
        assert list((tmp_path / "tmp").iterdir()) == []


def test_the_counts_of_a_replaced_worker_stay_in_the_totals(
    tmp_path: Path, test_tls: TestTls, verify: ssl.SSLContext
) -> None:
    with user_service(tmp_path, test_tls, workers=WORKERS) as (base_url, process):
        (directory,) = metrics_directories(tmp_path)
        sent = spread_livez_over_workers(base_url, directory, verify)
        counts = wait_for_counted(directory, LIVEZ, sent)
        killed = next(pid for pid, count in counts.items() if count > 0)

        os.kill(killed, signal.SIGKILL)  # no chance to write anything more
        wait_until(
            lambda: len(pids := worker_pids(process.pid)) == WORKERS and killed not in pids,
            timeout=30,
            what=f"worker {killed} replaced",
        )
        wait_for_startups(tmp_path / "user-service.log", WORKERS + 1, process)
        scrapes = [
            scraped_livez(httpx.get(f"{base_url}/metrics", timeout=10, verify=verify))
            for _ in range(10)
        ]

    # Every scrape, whichever worker answers it, still counts what the killed one served.
    assert scrapes == [(sent, sent)] * len(scrapes)
    assert counts[killed] > 0
