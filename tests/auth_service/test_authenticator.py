"""The order of a validation's steps, with a real store, pool and clock under test control."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from auth_service.authenticator import Authenticator, Outcome, Validation
from auth_service.hash_pool import HashPool
from auth_service.lockout import LockoutPolicy
from auth_service.passwords import PasswordHashing
from auth_service.store import store_from_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from auth_service.settings import Settings

pytestmark = pytest.mark.anyio

POLICY = LockoutPolicy(threshold=2, window_seconds=60.0, max_tracked_unknown_names=10)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[HashPool]:
    pool = HashPool(PasswordHashing(settings), workers=1, max_pending=1)
    await pool.open()
    yield pool
    pool.close()


@pytest.fixture
async def authenticator(
    settings: Settings, pool: HashPool, clock: Clock, password: str
) -> AsyncIterator[Authenticator]:
    async with store_from_settings(settings) as store:
        await store.add("alice", PasswordHashing(settings).hash(password))
        yield Authenticator(store, pool, POLICY, clock=clock)


async def test_right_password_is_valid(authenticator: Authenticator, password: str) -> None:
    assert await authenticator.validate("alice", password) == Validation(Outcome.VALID)


async def test_overloaded_validation_counts_no_failure(
    authenticator: Authenticator, pool: HashPool, password: str
) -> None:
    with pool.reserve():
        overloaded = [await authenticator.validate("alice", "guess") for _ in range(3)]

    assert overloaded == [Validation(Outcome.OVERLOADED, 1.0)] * 3
    assert await authenticator.validate("alice", password) == Validation(Outcome.VALID)


async def test_lock_lasts_from_the_first_failure_to_the_window_end(
    authenticator: Authenticator, clock: Clock, password: str
) -> None:
    await authenticator.validate("alice", "guess")
    clock.now += 20
    await authenticator.validate("alice", "guess")
    clock.now += 10

    locked = await authenticator.validate("alice", password)
    clock.now += 30
    after = await authenticator.validate("alice", password)

    assert (locked, after) == (Validation(Outcome.LOCKED, 30.0), Validation(Outcome.VALID))


async def test_place_is_given_back_after_each_outcome(
    authenticator: Authenticator, pool: HashPool, password: str
) -> None:
    outcomes = [
        (await authenticator.validate(*credentials)).outcome
        for credentials in [
            ("alice", password),
            ("nobody", password),
            ("alice", "guess"),
            ("alice", "guess"),
            ("alice", "guess"),
        ]
    ]

    assert outcomes == [
        Outcome.VALID,
        Outcome.INVALID,
        Outcome.INVALID,
        Outcome.INVALID,
        Outcome.LOCKED,
    ]
    assert pool.pending == 0


async def test_unknown_name_gives_the_outcomes_of_a_user(
    authenticator: Authenticator, clock: Clock
) -> None:
    outcomes = {
        username: [await authenticator.validate(username, "guess") for _ in range(4)]
        for username in ("alice", "nobody")
    }
    clock.now += 60
    after = [await authenticator.validate(username, "guess") for username in ("alice", "nobody")]

    assert outcomes["nobody"] == outcomes["alice"]
    assert (
        outcomes["alice"]
        == [Validation(Outcome.INVALID)] * 2 + [Validation(Outcome.LOCKED, 60.0)] * 2
    )
    assert after == [Validation(Outcome.INVALID)] * 2
