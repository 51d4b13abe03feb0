"""Every account acknowledged with a 201 survives user-service being killed mid-traffic.

user-service serves HTTPS and is called as frontend-web, with its client token;
it calls a stand-in auth-service over HTTPS, with its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.system import (
    FRONTEND_WEB,
    TO_AUTH_SERVICE,
    USER_SERVICE,
    ClientToken,
    ServiceProcess,
    add_client,
    caller_settings,
    stand_in_token,
    verified,
)
from tests.user_service.stand_in_auth import serve_stand_in

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.tls import TestTls
    from tests.user_service.stand_in_auth import StandInAuthService

pytestmark = pytest.mark.e2e

PASSWORD = "pw-e2e-durability-3c1f"
CLIENTS = 8
# The process is killed after this many 201s, or after KILL_AFTER_SECONDS, whichever comes first.
KILL_AFTER_CREATES = 40
KILL_AFTER_SECONDS = 2.0
# Bounds on each client, so that the traffic stops by itself even if the kill went wrong.
MAX_REQUESTS_PER_CLIENT = 1000
CLIENT_DEADLINE_SECONDS = 6.0
# Fewer acknowledged accounts than this would make the check nearly vacuous.
MIN_ACKNOWLEDGED = 10

_logger = logging.getLogger(__name__)


@dataclass
class Traffic:
    """What the clients saw before, during and after the kill.

    Attributes:
        acknowledged: Username -> id of every account answered with 201.
        attempted: Every username sent.
        cut_off: Username -> error of each request that ended without an
            answer. Requests that were in flight when the process died end with
            a read or protocol error; later ones cannot even connect.
        unexpected: Username -> status of each answer other than 201.
        acknowledged_at_kill: How many 201s had come when the process was killed.
    """

    acknowledged: dict[str, int] = field(default_factory=dict)
    attempted: set[str] = field(default_factory=set)
    cut_off: dict[str, str] = field(default_factory=dict)
    unexpected: dict[str, int] = field(default_factory=dict)
    acknowledged_at_kill: int | None = None

    def in_flight_at_kill(self) -> set[str]:
        """The usernames of requests the kill interrupted (sent, but never answered)."""
        return {name for name, error in self.cut_off.items() if error != "ConnectError"}


@dataclass(frozen=True)
class Caller:
    """How the test calls user-service: as frontend-web, over HTTPS."""

    token: ClientToken
    tls: TestTls

    def client(self, base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=base_url, headers=self.token.headers, verify=verified(self.tls), timeout=5
        )

    def blocking_client(self, base_url: str) -> httpx.Client:
        return httpx.Client(
            base_url=base_url, headers=self.token.headers, verify=verified(self.tls), timeout=5
        )


async def _create_accounts_until_killed(
    base_url: str, process: subprocess.Popen[bytes], caller: Caller
) -> Traffic:
    traffic = Traffic()
    enough = asyncio.Event()

    async def client(number: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLIENT_DEADLINE_SECONDS
        async with caller.client(base_url) as http:
            for attempt in range(MAX_REQUESTS_PER_CLIENT):
                if loop.time() > deadline:
                    return
                username = f"durable{number}n{attempt}"
                traffic.attempted.add(username)
                try:
                    response = await http.post(
                        "/accounts", json={"username": username, "password": PASSWORD}
                    )
                except httpx.TransportError as error:
                    traffic.cut_off[username] = type(error).__name__
                    return
                if response.status_code != 201:
                    traffic.unexpected[username] = response.status_code
                    continue
                body = response.json()
                assert body["username"] == username, body
                traffic.acknowledged[username] = body["id"]
                if len(traffic.acknowledged) >= KILL_AFTER_CREATES:
                    enough.set()

    async def killer() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), KILL_AFTER_SECONDS)
        process.kill()  # SIGKILL: no shutdown, no checkpoint, no flush of anything
        traffic.acknowledged_at_kill = len(traffic.acknowledged)

    await asyncio.gather(killer(), *(client(number) for number in range(CLIENTS)))
    process.wait(timeout=5)
    return traffic


@pytest.fixture
def stand_in_auth(test_tls: TestTls) -> Iterator[StandInAuthService]:
    with serve_stand_in(tls=test_tls) as stand_in:  # answers {"valid": true}
        yield stand_in


@contextlib.contextmanager
def _serve(
    database: Path, auth_url: str, auth_token: ClientToken, tls: TestTls, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``user-service serve`` (one process) on ``database``; yield it and its base URL."""
    service = ServiceProcess(
        USER_SERVICE,
        {
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{database}",
            **caller_settings(TO_AUTH_SERVICE, auth_url, auth_token, tls),
        },
        log_path,
        tls,
        # One process: the kill must hit the process that holds the accounts.
        options=("--workers", "1"),
    )
    with service.running() as process:
        yield process, service.url


def _stored_accounts(database: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT id, username FROM accounts ORDER BY id").fetchall()
    return [(account_id, username) for account_id, username in rows]


def test_acknowledged_accounts_survive_sigkill_mid_traffic(
    tmp_path: Path, stand_in_auth: StandInAuthService, test_tls: TestTls
) -> None:
    database = tmp_path / "accounts.db"
    caller = Caller(
        add_client(
            USER_SERVICE,
            FRONTEND_WEB,
            {"USER_SERVICE_DATABASE_URL": f"sqlite:///{database}"},
            tmp_path,
        ),
        test_tls,
    )
    auth_token = stand_in_token(TO_AUTH_SERVICE, tmp_path)
    serving = functools.partial(_serve, database, stand_in_auth.base_url, auth_token, test_tls)

    with serving(tmp_path / "before-kill.log") as (process, url):
        traffic = asyncio.run(_create_accounts_until_killed(url, process, caller))
    assert process.returncode == -9, "the process should have died of SIGKILL"
    assert len(traffic.acknowledged) >= MIN_ACKNOWLEDGED, traffic
    assert traffic.unexpected == {}, "every answer before the kill should have been 201"

    with (
        serving(tmp_path / "after-restart.log") as (_, url),
        caller.blocking_client(url) as http,
    ):
        found = {
            username: http.get(f"/accounts/{account_id}")
            for username, account_id in traffic.acknowledged.items()
        }
    lost = {
        username: response.status_code
        for username, response in found.items()
        if response.status_code != 200 or response.json()["username"] != username
    }
    stored = _stored_accounts(database)

    in_flight = traffic.in_flight_at_kill()
    stored_names = [username for _, username in stored]
    _logger.info(
        "durability: %d acknowledged (%d at the kill), %d cut off of which %d in flight"
        " (%d of those were stored anyway), %d stored",
        len(traffic.acknowledged),
        traffic.acknowledged_at_kill,
        len(traffic.cut_off),
        len(in_flight),
        len(in_flight & set(stored_names)),
        len(stored),
    )
    assert lost == {}, f"accounts acknowledged with 201 but gone after the restart: {lost}"
    duplicates = [name for name, count in Counter(stored_names).items() if count > 1]
    assert duplicates == [], f"usernames stored more than once: {duplicates}"
    assert set(traffic.acknowledged.items()) <= {(name, id_) for id_, name in stored}
    # Nothing appears that no client asked for; a cut-off request may or may not be stored.
    assert set(stored_names) <= traffic.attempted
    assert set(stored_names) - set(traffic.acknowledged) <= set(traffic.cut_off)
    # Every call to auth-service carried user-service's token.
    assert {received.authorization for received in stand_in_auth.received} == {
        auth_token.headers["Authorization"]
    }
