"""One suite of behaviours that every account store keeps, run against each of them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from servicekit.client_tokens import token_digest
from tests.user_service.stores.clock import ManualClock, policy_on
from user_service.accounts import (
    Claimed,
    Completed,
    IdempotencyClaim,
    IdempotencyClaimLostError,
    InFlight,
    Mismatch,
    UserAccount,
    UsernameTakenError,
    utc_now,
)

if TYPE_CHECKING:
    from tests.user_service.stores.conftest import Backend
    from user_service.accounts import AccountStore

CLAIM = IdempotencyClaim(key="key-1", fingerprint="body-a")
OTHER_BODY = IdempotencyClaim(key="key-1", fingerprint="body-b")
TTL = timedelta(hours=24)
LEASE = timedelta(seconds=60)
TICK = timedelta(milliseconds=1)
RACERS = 20


def _single_winner(results: list[UserAccount | BaseException]) -> UserAccount:
    """Check that exactly one racer created the account and every other one was refused."""
    winners = [result for result in results if isinstance(result, UserAccount)]
    losers = [result for result in results if isinstance(result, UsernameTakenError)]
    assert len(winners) == 1, results
    assert len(losers) == len(results) - 1, results
    return winners[0]


def test_create_then_get(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        created = await store.create("alice")
        assert created.username == "alice"
        fetched = await store.get(created.id)
        assert fetched == created
        assert fetched is not None
        assert fetched.created_at == created.created_at

    backend.run(scenario)


def test_ids_increase_from_one(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        ids = [(await store.create(name)).id for name in ("alice", "bob", "carol")]
        assert ids[0] == 1
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)

    backend.run(scenario)


def test_created_at_is_set_by_the_store_in_utc(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        before = utc_now()
        account = await store.create("alice")
        after = utc_now()
        assert account.created_at.utcoffset() == timedelta(0)
        # PostgreSQL's clock stamps it: allow for a little skew from ours.
        assert before - timedelta(seconds=1) <= account.created_at <= after + timedelta(seconds=1)

    backend.run(scenario)


def test_duplicate_username_is_refused(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        first = await store.create("alice")
        with pytest.raises(UsernameTakenError):
            await store.create("alice")
        assert await store.get(first.id) == first
        assert (await store.create("bob")).id > first.id

    backend.run(scenario)


def test_concurrent_creates_of_one_username_make_one_account(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        results = await asyncio.gather(
            *(store.create("alice") for _ in range(RACERS)), return_exceptions=True
        )
        winner = _single_winner(results)
        assert await store.get(winner.id) == winner

    backend.run(scenario)


def test_get_of_unknown_id_is_none(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        await store.create("alice")
        assert await store.get(999) is None
        assert await store.get(0) is None
        assert await store.get(-1) is None
        assert await store.get(2**70) is None

    backend.run(scenario)


def test_claim_complete_replay(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        assert await store.claim(CLAIM) == Claimed()
        account = await store.create("alice", idempotency=CLAIM)
        replay = await store.claim(CLAIM)
        assert replay == Completed(account)
        assert isinstance(replay, Completed)
        assert replay.account.created_at == account.created_at
        assert await store.claim(OTHER_BODY) == Mismatch()

    backend.run(scenario)


def test_unfinished_claim_is_in_flight(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        assert await store.claim(CLAIM) == Claimed()
        assert await store.claim(CLAIM) == InFlight()

    backend.run(scenario)


def test_same_key_with_another_body_is_a_mismatch(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        assert await store.claim(CLAIM) == Claimed()
        assert await store.claim(OTHER_BODY) == Mismatch()

    backend.run(scenario)


def test_concurrent_claims_of_one_key_let_one_through(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        outcomes = await asyncio.gather(*(store.claim(CLAIM) for _ in range(RACERS)))
        assert outcomes.count(Claimed()) == 1
        assert outcomes.count(InFlight()) == RACERS - 1

    backend.run(scenario)


def test_release_then_claim_again(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        assert await store.claim(CLAIM) == Claimed()
        await store.release(OTHER_BODY)
        assert await store.claim(CLAIM) == InFlight()
        await store.release(CLAIM)
        assert await store.claim(CLAIM) == Claimed()

    backend.run(scenario)


def test_release_leaves_a_completed_key(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        await store.claim(CLAIM)
        account = await store.create("alice", idempotency=CLAIM)
        await store.release(CLAIM)
        assert await store.claim(CLAIM) == Completed(account)

    backend.run(scenario)


def test_refused_create_leaves_its_claim_unfinished(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        await store.create("alice")
        assert await store.claim(CLAIM) == Claimed()
        with pytest.raises(UsernameTakenError):
            await store.create("alice", idempotency=CLAIM)
        assert await store.claim(CLAIM) == InFlight()
        await store.release(CLAIM)
        assert await store.claim(CLAIM) == Claimed()

    backend.run(scenario)


def test_expired_key_can_be_claimed_again(backend: Backend) -> None:
    clock = ManualClock()

    async def scenario(store: AccountStore) -> None:
        await store.claim(CLAIM)
        await store.create("alice", idempotency=CLAIM)
        await store.claim(IdempotencyClaim("in-flight", "body-a"))
        clock.advance(TTL - TICK)
        assert await store.claim(OTHER_BODY) == Mismatch()
        clock.advance(TICK)
        assert await store.claim(OTHER_BODY) == Claimed()
        assert await store.claim(IdempotencyClaim("in-flight", "body-b")) == Claimed()

    backend.run(scenario, policy=policy_on(clock, ttl=TTL, lease=timedelta(days=1)))


def test_abandoned_claim_can_be_claimed_again(backend: Backend) -> None:
    clock = ManualClock()

    async def scenario(store: AccountStore) -> None:
        await store.claim(CLAIM)
        clock.advance(LEASE - TICK)
        assert await store.claim(CLAIM) == InFlight()
        clock.advance(TICK)
        assert await store.claim(OTHER_BODY) == Claimed()
        assert await store.claim(OTHER_BODY) == InFlight()
        assert await store.claim(CLAIM) == Mismatch()

    backend.run(scenario, policy=policy_on(clock, ttl=TTL, lease=LEASE))


def test_completed_claim_outlives_its_lease(backend: Backend) -> None:
    clock = ManualClock()

    async def scenario(store: AccountStore) -> None:
        await store.claim(CLAIM)
        account = await store.create("alice", idempotency=CLAIM)
        clock.advance(LEASE * 2)
        assert await store.claim(CLAIM) == Completed(account)

    backend.run(scenario, policy=policy_on(clock, ttl=TTL, lease=LEASE))


def test_a_claim_past_its_lease_still_completes_while_nobody_else_claimed(
    backend: Backend,
) -> None:
    clock = ManualClock()

    async def scenario(store: AccountStore) -> None:
        await store.claim(CLAIM)
        clock.advance(LEASE * 2)
        account = await store.create("alice", idempotency=CLAIM)
        assert await store.claim(CLAIM) == Completed(account)

    backend.run(scenario, policy=policy_on(clock, ttl=TTL, lease=LEASE))


async def _claimed_again_after_the_lease(
    store: AccountStore, clock: ManualClock, second_username: str = "alice"
) -> tuple[IdempotencyClaim, IdempotencyClaim]:
    """Claim ``key-1`` for alice, let the lease run out, and claim it again for a new request."""
    first = IdempotencyClaim("key-1", "alice")
    second = IdempotencyClaim("key-1", second_username)
    assert await store.claim(first) == Claimed()
    clock.advance(LEASE)
    assert await store.claim(second) == Claimed()
    return first, second


@pytest.mark.parametrize("second_username", ["alice", "bob"])
def test_a_claim_taken_over_after_its_lease_cannot_complete_the_key(
    backend: Backend, second_username: str
) -> None:
    clock = ManualClock()

    async def scenario(store: AccountStore) -> None:
        first, second = await _claimed_again_after_the_lease(store, clock, second_username)
        with pytest.raises(IdempotencyClaimLostError):
            await store.create("alice", idempotency=first)
        # Neither the first request's account nor its completion was stored.
        assert await store.claim(IdempotencyClaim("key-1", second_username)) == InFlight()
        await store.release(first)
        assert await store.claim(IdempotencyClaim("key-1", second_username)) == InFlight()
        account = await store.create(second_username, idempotency=second)
        assert account.username == second_username
        assert await store.claim(IdempotencyClaim("key-1", second_username)) == Completed(account)
        assert await store.claim(IdempotencyClaim("key-1", "alice")) == (
            Completed(account) if second_username == "alice" else Mismatch()
        )

    backend.run(scenario, policy=policy_on(clock, ttl=TTL, lease=LEASE))


def test_a_completed_key_is_not_completed_again_by_another_claim(backend: Backend) -> None:
    clock = ManualClock()

    async def scenario(store: AccountStore) -> None:
        first, second = await _claimed_again_after_the_lease(store, clock)
        account = await store.create("alice", idempotency=second)
        with pytest.raises(IdempotencyClaimLostError):
            await store.create("bob", idempotency=first)
        assert await store.claim(IdempotencyClaim("key-1", "alice")) == Completed(account)
        assert await store.claim(IdempotencyClaim("key-2", "bob")) == Claimed()
        assert (await store.create("bob")).username == "bob"

    backend.run(scenario, policy=policy_on(clock, ttl=TTL, lease=LEASE))


def test_release_of_a_claim_taken_over_leaves_the_new_claim(backend: Backend) -> None:
    clock = ManualClock()

    async def scenario(store: AccountStore) -> None:
        first, second = await _claimed_again_after_the_lease(store, clock)
        await store.release(first)
        assert await store.claim(IdempotencyClaim("key-1", "alice")) == InFlight()
        await store.release(second)
        assert await store.claim(IdempotencyClaim("key-1", "alice")) == Claimed()

    backend.run(scenario, policy=policy_on(clock, ttl=TTL, lease=LEASE))


def test_reset_empties_the_store_and_restarts_ids(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        await store.claim(CLAIM)
        first = await store.create("alice", idempotency=CLAIM)
        await store.create("bob")
        await store.reset()
        assert await store.get(first.id) is None
        assert await store.claim(CLAIM) == Claimed()
        assert (await store.create("alice")).id == 1

    backend.run(scenario)


def test_open_twice_is_harmless(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        account = await store.create("alice")
        await store.open()
        assert await store.get(account.id) == account
        assert (await store.create("bob")).id > account.id

    backend.run(scenario)


def test_closed_store_can_be_opened_again(durable_backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        account = await store.create("alice")
        await store.close()
        await store.open()
        assert await store.get(account.id) == account

    durable_backend.run(scenario)


def test_ping(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        await store.ping()

    backend.run(scenario)


def test_accounts_survive_a_restart(durable_backend: Backend) -> None:
    async def first_run(store: AccountStore) -> None:
        await store.claim(CLAIM)
        await store.create("alice", idempotency=CLAIM)
        await store.create("bob")

    async def second_run(store: AccountStore) -> None:
        alice = await store.get(1)
        assert alice is not None
        assert alice.username == "alice"
        assert await store.claim(CLAIM) == Completed(alice)
        with pytest.raises(UsernameTakenError):
            await store.create("bob")
        assert (await store.create("carol")).id > 2  # alice and bob took 1 and 2

    durable_backend.run(first_run)
    durable_backend.run(second_run)


def test_two_instances_racing_make_one_account(durable_backend: Backend) -> None:
    async def main() -> None:
        stores = [durable_backend.new(), durable_backend.new()]
        await asyncio.gather(*(store.open() for store in stores))
        try:
            results = await asyncio.gather(
                *(stores[i % 2].create("alice") for i in range(RACERS)), return_exceptions=True
            )
            winner = _single_winner(results)
            assert await stores[0].get(winner.id) == winner
            assert await stores[1].get(winner.id) == winner
        finally:
            await asyncio.gather(*(store.close() for store in stores))

    asyncio.run(main())


def test_two_instances_racing_claim_one_key(durable_backend: Backend) -> None:
    async def main() -> None:
        stores = [durable_backend.new(), durable_backend.new()]
        await asyncio.gather(*(store.open() for store in stores))
        try:
            outcomes = await asyncio.gather(*(stores[i % 2].claim(CLAIM) for i in range(RACERS)))
            assert outcomes.count(Claimed()) == 1
            assert outcomes.count(InFlight()) == RACERS - 1
        finally:
            await asyncio.gather(*(store.close() for store in stores))

    asyncio.run(main())


def test_reset_leaves_the_registered_clients(backend: Backend) -> None:
    async def scenario(store: AccountStore) -> None:
        token = await store.clients.issue("frontend-web")
        await store.create("alice")
        await store.reset()
        assert await store.get(1) is None
        assert await store.clients.client_of(token_digest(token)) == "frontend-web"

    backend.run(scenario)


def test_registered_clients_survive_a_restart(durable_backend: Backend) -> None:
    tokens: list[str] = []

    async def first_run(store: AccountStore) -> None:
        tokens.append(await store.clients.issue("frontend-web"))

    async def second_run(store: AccountStore) -> None:
        assert await store.clients.client_of(token_digest(tokens[0])) == "frontend-web"
        assert [held.client for held in await store.clients.tokens()] == ["frontend-web"]

    durable_backend.run(first_run)
    durable_backend.run(second_run)
