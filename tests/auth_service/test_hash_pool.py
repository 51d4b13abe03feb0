"""The bounded hash pool: its cap, and places held until the work is done."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import pytest

from auth_service.hash_pool import AbandonedError, HashPool, OverloadedError
from auth_service.passwords import CheckResult, PasswordHashing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from auth_service.settings import Settings

pytestmark = pytest.mark.anyio


class GatedHashing(PasswordHashing):
    """Checks that wait until the test lets them finish."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gate = threading.Event()
        self.started = threading.Event()

    def check(self, password_hash: str | None, password: str) -> CheckResult:
        self.started.set()
        self.gate.wait(timeout=10)
        return super().check(password_hash, password)


async def open_ungated(pool: HashPool, hashing: GatedHashing | CountedHashing) -> None:
    """Open ``pool``, its timing check let through at once, then close the gate again."""
    hashing.gate.set()
    await pool.open()
    hashing.gate.clear()
    hashing.started.clear()
    if isinstance(hashing, CountedHashing):
        hashing.checks = 0


@pytest.fixture
def hashing(sqlite_settings: Settings) -> GatedHashing:
    return GatedHashing(sqlite_settings)


@pytest.fixture
async def pool(hashing: GatedHashing) -> AsyncIterator[HashPool]:
    pool = HashPool(hashing, workers=1, max_pending=2)
    await open_ungated(pool, hashing)
    yield pool
    hashing.gate.set()
    pool.close()


async def test_check_runs_in_a_place(pool: HashPool, hashing: GatedHashing) -> None:
    hashing.gate.set()
    stored = hashing.hash("secret")

    with pool.reserve() as slot:
        result = await slot.check(stored, "secret")

    assert (result.matched, pool.pending) == (True, 0)


async def test_reserving_past_the_cap_is_refused(pool: HashPool) -> None:
    with pool.reserve(), pool.reserve(), pytest.raises(OverloadedError):
        pool.reserve()


async def test_unused_place_is_given_back(pool: HashPool) -> None:
    with pool.reserve():
        assert pool.pending == 1

    assert pool.pending == 0


async def test_place_is_held_until_an_abandoned_check_finishes(
    pool: HashPool, hashing: GatedHashing
) -> None:
    async def check() -> None:
        with pool.reserve() as slot:
            await slot.check(None, "secret")

    task = asyncio.create_task(check())
    await asyncio.to_thread(hashing.started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert pool.pending == 1
    hashing.gate.set()
    for _ in range(200):
        if pool.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert pool.pending == 0


async def test_a_place_runs_one_check(pool: HashPool, hashing: GatedHashing) -> None:
    hashing.gate.set()
    with pool.reserve() as slot:
        await slot.check(None, "secret")

        with pytest.raises(RuntimeError, match="one check"):
            await slot.check(None, "secret")


class CountedHashing(PasswordHashing):
    """Checks that count themselves and, gated, wait until the test lets them finish."""

    def __init__(self, settings: Settings, *, gated: bool = False) -> None:
        super().__init__(settings)
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.started = threading.Event()
        self.checks = 0

    def check(self, password_hash: str | None, password: str) -> CheckResult:
        self.checks += 1
        self.started.set()
        self.gate.wait(timeout=10)
        return super().check(password_hash, password)


class SteppedClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimedHashing(PasswordHashing):
    """Checks that each take ``seconds`` on a :class:`SteppedClock`."""

    def __init__(self, settings: Settings, clock: SteppedClock, seconds: float) -> None:
        super().__init__(settings)
        self._clock = clock
        self.seconds = seconds

    def check(self, password_hash: str | None, password: str) -> CheckResult:
        self._clock.now += self.seconds
        return super().check(password_hash, password)


async def test_the_limit_is_what_the_threads_start_within_the_target_delay(
    sqlite_settings: Settings,
) -> None:
    clock = SteppedClock()
    hashing = TimedHashing(sqlite_settings, clock, seconds=0.05)
    pool = HashPool(hashing, workers=2, max_pending=500, target_delay=1.0, clock=clock)
    await pool.open()
    try:
        assert pool.check_seconds == pytest.approx(0.05)
        assert pool.limit == 40

        stored = hashing.hash("secret")
        hashing.seconds = 0.2  # the machine got slower: fewer checks fit in the target
        for _ in range(60):
            with pool.reserve() as slot:
                await slot.check(stored, "secret")

        assert pool.check_seconds == pytest.approx(0.2, rel=0.01)
        assert pool.limit == 10
    finally:
        pool.close()


async def test_the_limit_stays_within_the_cap_and_at_least_one_check_per_thread(
    sqlite_settings: Settings,
) -> None:
    clock = SteppedClock()
    fast = HashPool(
        TimedHashing(sqlite_settings, clock, 0.001), workers=2, max_pending=64, clock=clock
    )
    slow = HashPool(
        TimedHashing(sqlite_settings, clock, 5.0), workers=2, max_pending=64, clock=clock
    )
    await fast.open()
    await slow.open()
    try:
        assert (fast.limit, slow.limit) == (64, 2)
    finally:
        fast.close()
        slow.close()


async def test_a_check_that_cannot_finish_by_its_deadline_is_refused_at_once(
    sqlite_settings: Settings,
) -> None:
    clock = SteppedClock()
    pool = HashPool(
        TimedHashing(sqlite_settings, clock, 0.1), workers=1, max_pending=100, clock=clock
    )
    await pool.open()
    try:
        with pool.reserve(deadline=clock.now + 0.15), pool.reserve(deadline=clock.now + 0.25):
            # Two ahead on one thread: this one would finish 0.3 s from now.
            with pytest.raises(OverloadedError) as refused:
                pool.reserve(deadline=clock.now + 0.25)
            assert refused.value.retry_after == pytest.approx(0.2)
            with pool.reserve(deadline=clock.now + 0.35):
                assert pool.pending == 3
    finally:
        pool.close()


@pytest.fixture
async def one_thread_busy(
    sqlite_settings: Settings,
) -> AsyncIterator[tuple[HashPool, CountedHashing]]:
    """A pool of one thread, held by a check until the test opens the gate."""
    hashing = CountedHashing(sqlite_settings, gated=True)
    pool = HashPool(hashing, workers=1, max_pending=10)
    await open_ungated(pool, hashing)
    first = asyncio.create_task(_check(pool))
    await asyncio.to_thread(hashing.started.wait, 5)
    try:
        yield pool, hashing
    finally:
        hashing.gate.set()
        await first
        pool.close()


async def test_a_queued_check_whose_deadline_passes_is_never_hashed(
    one_thread_busy: tuple[HashPool, CountedHashing],
) -> None:
    pool, hashing = one_thread_busy
    loop = asyncio.get_running_loop()

    with pool.reserve() as slot:
        waited = loop.time()
        with pytest.raises(AbandonedError):
            await slot.check(None, "secret", deadline=time.monotonic() + 0.2)
        waited = loop.time() - waited

    hashing.gate.set()
    await _drained(pool)
    assert hashing.checks == 1
    assert 0.15 < waited < 5


async def test_a_queued_check_whose_caller_goes_is_never_hashed(
    one_thread_busy: tuple[HashPool, CountedHashing],
) -> None:
    pool, hashing = one_thread_busy
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    with pool.reserve() as slot:
        second = asyncio.create_task(slot.check(None, "secret", gone=gone))
        await asyncio.sleep(0)
        gone.set_result(None)
        with pytest.raises(AbandonedError):
            await second

    hashing.gate.set()
    await _drained(pool)
    assert hashing.checks == 1


async def test_a_running_check_goes_on_to_its_result_when_its_caller_goes(
    sqlite_settings: Settings,
) -> None:
    hashing = CountedHashing(sqlite_settings, gated=True)
    pool = HashPool(hashing, workers=1, max_pending=10)
    await open_ungated(pool, hashing)
    try:
        stored = await asyncio.to_thread(hashing.hash, "secret")
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with pool.reserve() as slot:
            running = asyncio.create_task(slot.check(stored, "secret", gone=gone))
            await asyncio.to_thread(hashing.started.wait, 5)
            gone.set_result(None)
            await asyncio.sleep(0.05)
            hashing.gate.set()
            result = await running

        assert (result.matched, hashing.checks) == (True, 1)
    finally:
        hashing.gate.set()
        pool.close()


async def _check(pool: HashPool) -> None:
    with pool.reserve() as slot:
        await slot.check(None, "secret")


async def _drained(pool: HashPool) -> None:
    for _ in range(500):
        if pool.pending == 0:
            return
        await asyncio.sleep(0.01)
    msg = f"{pool.pending} places still taken"
    raise AssertionError(msg)


class SlowToStartHashing(TimedHashing):
    """Making the dummy hash, once, takes far longer than a check."""

    def dummy_hash(self) -> str:
        if self._dummy_hash is None:
            self._clock.now += 1.0
        return super().dummy_hash()


async def test_the_first_estimate_is_a_check_not_the_making_of_the_dummy_hash(
    sqlite_settings: Settings,
) -> None:
    clock = SteppedClock()
    pool = HashPool(
        SlowToStartHashing(sqlite_settings, clock, 0.05), workers=2, max_pending=500, clock=clock
    )
    await pool.open()
    try:
        assert pool.check_seconds == pytest.approx(0.05)
        assert pool.limit == 40
    finally:
        pool.close()
