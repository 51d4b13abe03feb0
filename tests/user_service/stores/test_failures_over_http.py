"""A failing account database is answered 503 with Retry-After through the real app, never 500."""

from __future__ import annotations

import asyncio
import fcntl
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import TYPE_CHECKING

import asyncpg
import httpx

from servicekit.postgres import quote_identifier
from tests.support.servers import serve_in_thread
from tests.user_service.stub_verifier import RecordingVerifier
from user_service import create_app
from user_service.postgres_store import PostgresAccountStore
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from user_service.accounts import AccountStore

PASSWORD = "pw-store-failures-5e2d"


def _serve(store: AccountStore) -> AbstractContextManager[str]:
    return serve_in_thread(
        create_app(auth_verifier=RecordingVerifier(valid=True), account_store=store)
    )


def _post(base_url: str, username: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/accounts", json={"username": username, "password": PASSWORD}, timeout=30
    )


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert "detail" in response.json()


def test_a_corrupt_sqlite_file_is_503(corrupt_sqlite_file: Path) -> None:
    with _serve(SqliteAccountStore(corrupt_sqlite_file)) as base_url:
        _assert_unavailable(_post(base_url, "alice"))
        _assert_unavailable(httpx.get(f"{base_url}/accounts/1"))
        assert httpx.get(f"{base_url}/readyz").status_code == 503


def test_a_full_create_queue_is_503(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    requests = 6
    with (
        _serve(SqliteAccountStore(path, max_queued_creates=1)) as base_url,
        ThreadPoolExecutor(requests) as pool,
    ):
        with (tmp_path / "accounts.db-writer.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            answers = [pool.submit(_post, base_url, f"user{n}") for n in range(requests)]
            # At most one batch and one create waiting: the others are refused at once.
            deadline = time.monotonic() + 10
            while sum(answer.done() for answer in answers) < requests - 2:
                assert time.monotonic() < deadline, "creates past the bound were not refused"
                time.sleep(0.01)
            fcntl.flock(lock, fcntl.LOCK_UN)
        responses = [answer.result() for answer in answers]
        created = [response for response in responses if response.status_code == 201]
        for response in responses:
            if response.status_code != 201:
                _assert_unavailable(response)
        assert 1 <= len(created) <= 2
        for response in created:
            assert httpx.get(f"{base_url}/accounts/{response.json()['id']}").status_code == 200


def test_a_stalled_postgres_is_503_not_a_hang(postgres_url: str, postgres_schema: str) -> None:
    store = PostgresAccountStore(postgres_url, schema=postgres_schema, timeout_seconds=0.5)

    async def hold_the_table(locked: asyncio.Event, release: asyncio.Event) -> None:
        other = await asyncpg.connect(
            postgres_url, server_settings={"search_path": quote_identifier(postgres_schema)}
        )
        try:
            async with other.transaction():
                await other.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await release.wait()
        finally:
            await other.close()

    with _serve(store) as base_url:
        with closing(asyncio.new_event_loop()) as loop, ThreadPoolExecutor(1) as pool:
            locked, release = asyncio.Event(), asyncio.Event()
            holder = pool.submit(loop.run_until_complete, hold_the_table(locked, release))
            deadline = time.monotonic() + 10
            while not locked.is_set():
                assert time.monotonic() < deadline, "the table was never locked"
                time.sleep(0.01)
            started = time.monotonic()
            _assert_unavailable(_post(base_url, "alice"))
            _assert_unavailable(httpx.get(f"{base_url}/accounts/1", timeout=30))
            assert time.monotonic() - started < 10
            loop.call_soon_threadsafe(release.set)
            holder.result(timeout=10)
        assert _post(base_url, "alice").status_code == 201
