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
    kinds = ["alice", "nobody"] * REQUESTS_OF_EACH_KIND
    random.Random(8265).shuffle(kinds)  # noqa: S311 (a reproducible order, not a secret)
    durations: dict[str, list[float]] = {"alice": [], "nobody": []}

    with serving(settings) as client:
        for _ in range(WARM_UP_REQUESTS):
            timed(client, "alice")
            timed(client, "nobody")
        for username in kinds:
            durations[username].append(timed(client, username))

    wrong_password = statistics.median(durations["alice"])
    unknown_user = statistics.median(durations["nobody"])
    difference = abs(wrong_password - unknown_user) / max(wrong_password, unknown_user)
    assert difference < 0.10, (
        f"median wrong password {wrong_password * 1000:.2f} ms, "
        f"unknown user {unknown_user * 1000:.2f} ms: {difference:.1%} apart"
    )
