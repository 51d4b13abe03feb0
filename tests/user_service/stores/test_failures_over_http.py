"""A failing account database is answered 503 with Retry-After through the real app, never 500."""

from __future__ import annotations

import asyncio
import fcntl
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING

import asyncpg
import httpx

from servicekit.postgres import quote_identifier
from tests.support.servers import serve_in_thread
from tests.user_service.client_headers import caller_headers
from tests.user_service.stores.conftest import fill_then_corrupt
from tests.user_service.stub_verifier import RecordingVerifier
from user_service import create_app
from user_service.postgres_store import PostgresAccountStore
from user_service.sqlite_store import SqliteAccountStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from user_service.accounts import AccountStore

PASSWORD = "pw-store-failures-5e2d"


@contextmanager
def _serve(store: AccountStore, headers: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """Serve the app on ``store``; yield an HTTP client of a client registered in it.

    ``headers`` are those of a client registered earlier; when omitted, one is
    registered now.
    """
    headers = headers or caller_headers(store)
    app = create_app(auth_verifier=RecordingVerifier(valid=True), account_store=store)
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(base_url=base_url, headers=headers, timeout=30) as client,
    ):
        yield client


def _post(client: httpx.Client, username: str) -> httpx.Response:
    return client.post("/accounts", json={"username": username, "password": PASSWORD})


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert "detail" in response.json()


def test_a_corrupt_sqlite_file_is_503(tmp_path: Path) -> None:
    path = tmp_path / "corrupt" / "accounts.db"
    headers = caller_headers(SqliteAccountStore(path))  # registered while the file was sound
    fill_then_corrupt(path)

    with _serve(SqliteAccountStore(path), headers) as client:
        _assert_unavailable(_post(client, "alice"))
        _assert_unavailable(client.get("/accounts/1"))
        assert client.get("/readyz").status_code == 503


def test_a_full_create_queue_is_503(tmp_path: Path) -> None:
    path = tmp_path / "accounts.db"
    requests = 6
    with (
        _serve(SqliteAccountStore(path, max_queued_creates=1)) as client,
        ThreadPoolExecutor(requests) as pool,
    ):
        with (tmp_path / "accounts.db-writer.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            answers = [pool.submit(_post, client, f"user{n}") for n in range(requests)]
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
            assert client.get(f"/accounts/{response.json()['id']}").status_code == 200


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

    with _serve(store) as client:
        with closing(asyncio.new_event_loop()) as loop, ThreadPoolExecutor(1) as pool:
            locked, release = asyncio.Event(), asyncio.Event()
            holder = pool.submit(loop.run_until_complete, hold_the_table(locked, release))
            try:
                deadline = time.monotonic() + 10
                while not locked.is_set():
                    assert time.monotonic() < deadline, "the table was never locked"
                    time.sleep(0.01)
                started = time.monotonic()
                _assert_unavailable(_post(client, "alice"))
                _assert_unavailable(client.get("/accounts/1"))
                assert time.monotonic() - started < 10
            finally:
                loop.call_soon_threadsafe(release.set)
            holder.result(timeout=10)
        assert _post(client, "alice").status_code == 201
