"""The names the seed documents: importable from ``user_service``, and doing what they say.

``app``, ``SERVICE_STATE`` and ``ACCOUNT_STORE`` belong to one default app per
process, which other test modules (the Pact provider verification) use too.
Tests that change it go through the ``default_app`` fixture, which restores
its verifier and empties its store afterwards; facts about a pristine default
app are checked in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI, HTTPException

import user_service
from tests.support.servers import serve_in_thread
from tests.user_service.client_headers import caller_headers
from tests.user_service.stub_verifier import RecordingVerifier
from user_service import (
    CreateAccountRequest,
    CreateAccountResponse,
    InMemoryAccountStore,
    UserAccount,
)
from user_service.accounts import UsernameTakenError
from user_service.state import service_state_of

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "correct horse battery staple"
ACCOUNT = {"username": "alice", "password": PASSWORD}


FRESH_INTERPRETER_SCRIPT = """
import json
import sys
import threading
from pathlib import Path

import user_service

facts = {"app_after_import": repr(user_service._default_app)}
facts["threads_after_import"] = threading.active_count()
user_service.app  # builds the default app
facts["database_after_build"] = Path(sys.argv[1]).exists()
facts["verifier"] = type(user_service.SERVICE_STATE.auth_verifier).__qualname__
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def fresh_interpreter(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What a new Python process saw of ``user_service``: after import, then after ``app``."""
    database = tmp_path_factory.mktemp("fresh") / "accounts.db"
    result = subprocess.run(
        [sys.executable, "-c", FRESH_INTERPRETER_SCRIPT, str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "USER_SERVICE_DATABASE_URL": f"sqlite:///{database}"},
    )
    assert result.returncode == 0, result.stderr
    facts: dict[str, object] = json.loads(result.stdout)
    return facts


def test_importing_builds_no_app(fresh_interpreter: dict[str, object]) -> None:
    assert fresh_interpreter["app_after_import"] == "None"


def test_importing_starts_no_thread(fresh_interpreter: dict[str, object]) -> None:
    assert fresh_interpreter["threads_after_import"] == 1


def test_building_the_default_app_opens_no_database(fresh_interpreter: dict[str, object]) -> None:
    assert fresh_interpreter["database_after_build"] is False


def test_default_verifier_is_an_auth_client(fresh_interpreter: dict[str, object]) -> None:
    assert fresh_interpreter["verifier"] == user_service.AuthClient.__qualname__


def test_app_is_a_fastapi_instance() -> None:
    assert isinstance(user_service.app, FastAPI)


def test_app_is_built_once() -> None:
    assert user_service.app is user_service.app


def test_service_state_is_that_of_app() -> None:
    assert user_service.SERVICE_STATE is service_state_of(user_service.app)


def test_account_store_is_the_store_of_app() -> None:
    assert user_service.ACCOUNT_STORE is user_service.SERVICE_STATE.account_store


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = user_service.no_such_name


@pytest.mark.parametrize("name", user_service.__all__)
def test_every_documented_name_is_importable(name: str) -> None:
    assert getattr(user_service, name) is not None


@dataclass(frozen=True)
class DefaultApp:
    """The seed's default app on a real socket, and the stub verifier it was given."""

    client: httpx.Client
    verifier: RecordingVerifier


# Other modules (the Pact provider verification) register frontend-web in the
# default app's store too: these tests call it as a client of their own.
SEED_CLIENT = "seed-names-tests"


@pytest.fixture(scope="module")
def default_app_headers() -> Iterator[dict[str, str]]:
    """Register a client in the default app's store; revoke it after the module's tests."""
    store = user_service.ACCOUNT_STORE
    yield caller_headers(store, SEED_CLIENT)

    async def revoke() -> None:
        await store.open()
        try:
            await store.clients.revoke(SEED_CLIENT)
        finally:
            await store.close()

    asyncio.run(revoke())


@pytest.fixture
def default_app(default_app_headers: dict[str, str]) -> Iterator[DefaultApp]:
    """Serve ``user_service.app`` with a stub verifier and no account; restore both afterwards."""
    original = user_service.SERVICE_STATE.auth_verifier
    verifier = RecordingVerifier(valid=True)
    with (
        serve_in_thread(user_service.app) as url,
        httpx.Client(base_url=url, headers=default_app_headers) as client,
    ):
        user_service.reset_state()
        user_service.set_auth_verifier(verifier)
        try:
            yield DefaultApp(client, verifier)
        finally:
            user_service.set_auth_verifier(original)
            user_service.reset_state()


def test_set_auth_verifier_takes_effect_on_the_next_request(default_app: DefaultApp) -> None:
    refusing = RecordingVerifier(valid=False)

    user_service.set_auth_verifier(refusing)
    response = default_app.client.post("/accounts", json=ACCOUNT)

    assert response.status_code == 401
    assert refusing.calls == [("alice", PASSWORD)]
    assert default_app.verifier.calls == []


def test_reset_state_empties_the_store_and_restarts_ids(default_app: DefaultApp) -> None:
    for username in ("alice", "bob"):
        default_app.client.post("/accounts", json={**ACCOUNT, "username": username})

    user_service.reset_state()

    assert default_app.client.get("/accounts/1").status_code == 404
    assert default_app.client.post("/accounts", json=ACCOUNT).json()["id"] == 1


def test_reset_state_inside_an_event_loop_raises_without_leaking_a_coroutine() -> None:
    async def reset_inside_a_loop() -> None:
        user_service.reset_state()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="event loop"):
            asyncio.run(reset_inside_a_loop())
        gc.collect()

    assert [str(warning.message) for warning in caught] == []


def test_create_account_function_creates_through_the_default_state(
    default_app: DefaultApp,
) -> None:
    request = CreateAccountRequest(username="alice", password=PASSWORD)

    created = asyncio.run(user_service.create_account(request))

    assert created == CreateAccountResponse(id=1, username="alice", status="created")
    assert default_app.verifier.calls == [("alice", PASSWORD)]
    assert default_app.client.get("/accounts/1").json()["username"] == "alice"


def test_create_account_function_refuses_invalid_credentials(default_app: DefaultApp) -> None:
    user_service.set_auth_verifier(RecordingVerifier(valid=False))
    request = CreateAccountRequest(username="alice", password=PASSWORD)

    with pytest.raises(HTTPException) as caught:
        asyncio.run(user_service.create_account(request))

    assert caught.value.status_code == 401
    assert default_app.client.get("/accounts/1").status_code == 404


def test_user_account_is_a_frozen_dataclass_of_id_and_username() -> None:
    account = UserAccount(7, "alice")

    assert dataclasses.is_dataclass(account)
    assert (account.id, account.username) == (7, "alice")
    with pytest.raises(dataclasses.FrozenInstanceError):
        account.username = "mallory"  # type: ignore[misc]


def test_user_accounts_are_equal_by_id_and_username() -> None:
    assert UserAccount(7, "alice") == UserAccount(7, "alice")
    assert UserAccount(7, "alice") != UserAccount(8, "alice")
    assert UserAccount(7, "alice") != UserAccount(7, "bob")


def test_in_memory_store_gives_ids_from_one() -> None:
    async def create_three() -> list[UserAccount]:
        store = InMemoryAccountStore()
        return [await store.create(name) for name in ("alice", "bob", "carol")]

    assert asyncio.run(create_three()) == [
        UserAccount(1, "alice"),
        UserAccount(2, "bob"),
        UserAccount(3, "carol"),
    ]


def test_in_memory_store_finds_what_it_created() -> None:
    async def create_then_get() -> tuple[UserAccount | None, UserAccount | None]:
        store = InMemoryAccountStore()
        await store.create("alice")
        return await store.get(1), await store.get(2)

    assert asyncio.run(create_then_get()) == (UserAccount(1, "alice"), None)


def test_in_memory_store_reset_forgets_accounts_and_restarts_ids() -> None:
    async def create_reset_create() -> tuple[UserAccount | None, UserAccount]:
        store = InMemoryAccountStore()
        await store.create("alice")
        await store.create("bob")
        await store.reset()
        forgotten = await store.get(2)
        return forgotten, await store.create("alice")

    assert asyncio.run(create_reset_create()) == (None, UserAccount(1, "alice"))


def test_in_memory_store_refuses_a_second_account_for_a_username() -> None:
    async def create_twice() -> None:
        store = InMemoryAccountStore()
        await store.create("alice")
        await store.create("alice")

    with pytest.raises(UsernameTakenError):
        asyncio.run(create_twice())


def test_in_memory_stores_are_independent() -> None:
    async def create_in_two() -> tuple[UserAccount, UserAccount]:
        first, second = InMemoryAccountStore(), InMemoryAccountStore()
        await first.create("alice")
        return await first.create("bob"), await second.create("bob")

    assert asyncio.run(create_in_two()) == (UserAccount(2, "bob"), UserAccount(1, "bob"))
