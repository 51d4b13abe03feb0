"""The sign-up rate limit kept in a real Redis on 127.0.0.1:6379, shared by replicas."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry

from frontend_web.factory import create_app
from frontend_web.rate_limit import UNREACHABLE_PAUSE_SECONDS, RateLimitMetrics, SignUpRateLimiter
from frontend_web.settings import Settings
from tests.frontend_web.conftest import FormBrowser
from tests.frontend_web.test_rate_limit import assert_rate_limited_page
from tests.support.servers import HOST, free_port, serve_in_thread
from tests.support.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.frontend_web.stand_in_user_service import StandInUserService

REDIS_PORT = 6379
# In the storage URL of the unreachable Redis: it must be in no log and no page.
REDIS_PASSWORD = "redis-pw-4c8e1a"


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A prefix of this test's own, whose keys are removed from Redis at the end."""
    prefix = f"test-rate-limit-{uuid.uuid4().hex}"
    yield prefix
    with redis.Redis(host=HOST, port=REDIS_PORT) as client:
        if keys := list(client.scan_iter(match=f"{prefix}:*")):
            client.delete(*keys)


def stored_keys(prefix: str) -> list[bytes]:
    with redis.Redis(host=HOST, port=REDIS_PORT) as client:
        return list(client.scan_iter(match=f"{prefix}:*"))


@contextmanager
def replica(
    user_service: StandInUserService, storage: str, key_prefix: str, rate_limit: str
) -> Iterator[FormBrowser]:
    """A frontend-web keeping its counts at ``storage``, and a browser of its own."""
    settings = Settings(
        user_service_url=user_service.base_url,
        rate_limit=rate_limit,
        rate_limit_storage=storage,  # type: ignore[arg-type]
    )
    app = create_app(settings, rate_limit_key_prefix=key_prefix)
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield FormBrowser(client)


def test_replicas_sharing_redis_share_the_limit(
    user_service: StandInUserService, key_prefix: str
) -> None:
    storage = f"redis://{HOST}:{REDIS_PORT}/0"
    with ExitStack() as stack:
        first, second = (
            stack.enter_context(replica(user_service, storage, key_prefix, "3/minute"))
            for _ in range(2)
        )

        allowed = [first.submit(), second.submit(), first.submit()]
        refused = [second.submit(), first.submit()]

    assert [response.status_code for response in allowed] == [200, 200, 200]
    for response in refused:
        assert_rate_limited_page(response)
    assert len(user_service.received) == 3
    assert len(stored_keys(key_prefix)) == 1


def test_an_unreachable_redis_lets_sign_ups_through_and_says_so(
    user_service: StandInUserService, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"redis://:{REDIS_PASSWORD}@{HOST}:{free_port()}/0"
    with (
        caplog.at_level(logging.WARNING, logger="frontend_web"),
        replica(user_service, closed, key_prefix, "1/minute") as browser,
    ):
        answers = [browser.submit(), browser.submit()]
        metrics = browser.client.get("/metrics").text

    assert [response.status_code for response in answers] == [200, 200]
    assert len(user_service.received) == 2
    assert "frontend_rate_limit_unchecked_total 2.0" in metrics
    assert "frontend_rate_limit_refused_total 0.0" in metrics
    # One warning: the second attempt came within the pause, Redis was not tried again.
    [warning] = [r for r in caplog.records if "rate limit unchecked" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "could not be reached (ConnectionError)" in warning.getMessage()
    assert warning.rate_limit_storage.startswith(f"redis://{HOST}:")  # type: ignore[attr-defined]
    assert REDIS_PASSWORD not in caplog.text
    for response in answers:
        assert REDIS_PASSWORD not in response.text


def test_redis_lost_after_counting_lets_sign_ups_through(
    user_service: StandInUserService, key_prefix: str
) -> None:
    with TcpProxy(REDIS_PORT).running() as proxy:
        storage = f"redis://{HOST}:{proxy.port}/0"
        with replica(user_service, storage, key_prefix, "1/minute") as browser:
            assert browser.submit().status_code == 200
            assert_rate_limited_page(browser.submit())

            proxy.cut()

            assert browser.submit().status_code == 200
    assert len(user_service.received) == 2


def test_redis_is_tried_again_after_the_pause(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    registry = CollectorRegistry()
    limiter = SignUpRateLimiter(
        "1/minute",
        f"redis://{HOST}:{free_port()}/0",
        metrics=RateLimitMetrics(registry),
        key_prefix=key_prefix,
        monotonic=lambda: now[0],
    )

    async def attempts() -> list[object]:
        try:
            answers: list[object] = [await limiter.check("192.0.2.1")]
            now[0] += UNREACHABLE_PAUSE_SECONDS - 0.1
            answers.append(await limiter.check("192.0.2.1"))
            now[0] += 0.1
            answers.append(await limiter.check("192.0.2.1"))
        finally:
            await limiter.close()
        return answers

    with caplog.at_level(logging.WARNING, logger="frontend_web"):
        assert asyncio.run(attempts()) == [None, None, None]

    tried = [r for r in caplog.records if "could not be reached" in r.getMessage()]
    assert len(tried) == 2
    assert registry.get_sample_value("frontend_rate_limit_unchecked_total") == 3
