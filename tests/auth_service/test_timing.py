"""An unknown user takes as long to refuse as a wrong password, over a real socket."""

from __future__ import annotations

import random
import statistics
import time
from typing import TYPE_CHECKING

from tests.auth_service.conftest import make_settings
from tests.auth_service.serving import add_user, serving

if TYPE_CHECKING:
    import httpx

REQUESTS_OF_EACH_KIND = 200
WARM_UP_REQUESTS = 10
# 8 MiB, one pass: a realistic cost, so the hash dominates a request (5 to 9 ms
# on a small machine, against about 1 ms for the rest), yet cheap enough for a
# few hundred requests of each kind in a few seconds.
REALISTIC_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 8192}


def timed(client: httpx.Client, username: str) -> float:
    started = time.perf_counter()
    response = client.post("/auth/validate", json={"username": username, "password": "guess"})
    elapsed = time.perf_counter() - started
    assert response.json() == {"valid": False, "subject": username}
    return elapsed


def test_unknown_user_and_wrong_password_take_the_same_time(sqlite_url: str, password: str) -> None:
    settings = make_settings(
        sqlite_url, **REALISTIC_ARGON2, hash_workers=1, lockout_threshold=1_000_000
    )
    add_user(settings, "alice", password)
    order = random.Random(8265)  # noqa: S311 (a reproducible order, not a secret)
    # Paired: each pair is one request of each kind, back to back in a random
    # order, so a change of load on the machine weighs on both kinds alike.
    differences: list[float] = []
    durations: list[float] = []

    with serving(settings) as client:
        for _ in range(WARM_UP_REQUESTS):
            timed(client, "alice")
            timed(client, "nobody")
        for _ in range(REQUESTS_OF_EACH_KIND):
            pair = ["alice", "nobody"]
            order.shuffle(pair)
            took = {username: timed(client, username) for username in pair}
            differences.append(took["alice"] - took["nobody"])
            durations.extend(took.values())

    typical = statistics.median(durations)
    difference = abs(statistics.median(differences)) / typical
    assert difference < 0.10, (
        f"a wrong password takes {statistics.median(differences) * 1000:+.2f} ms more than "
        f"an unknown user (median of {REQUESTS_OF_EACH_KIND} pairs), against "
        f"{typical * 1000:.2f} ms a request: {difference:.1%}"
    )
