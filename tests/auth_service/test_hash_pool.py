"""The bounded hash pool: its cap, and places held until the work is done."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest

from auth_service.hash_pool import HashPool, OverloadedError
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


@pytest.fixture
def hashing(sqlite_settings: Settings) -> GatedHashing:
    return GatedHashing(sqlite_settings)


@pytest.fixture
async def pool(hashing: GatedHashing) -> AsyncIterator[HashPool]:
    pool = HashPool(hashing, workers=1, max_pending=2)
    await pool.open()
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
