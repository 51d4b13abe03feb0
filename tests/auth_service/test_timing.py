"""An unknown user takes as long to refuse as a wrong password, over a real socket.

Both are counted now (an unknown name under its keyed digest), on each kind
of database: a name tried again, and a name tried for the first time, whose
failure makes a row where a user's updates one.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import TYPE_CHECKING

from auth_service.admin import UserAdmin
from tests.auth_service.conftest import make_settings
from tests.auth_service.serving import add_user, serving

if TYPE_CHECKING:
    from collections.abc import Callable

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


def compare_in_pairs(client: httpx.Client, pair_of: Callable[[int], tuple[str, str]]) -> None:
    """Time ``pair_of(n)``, a user's name and an unknown one, for n in turn; compare the medians.

    Paired: each pair is one request of each kind, back to back in a random
    order, so a change of load on the machine weighs on both kinds alike.
    """
    order = random.Random(8265)  # noqa: S311 (a reproducible order, not a secret)
    differences: list[float] = []
    durations: list[float] = []
    for n in range(-WARM_UP_REQUESTS, REQUESTS_OF_EACH_KIND):
        known, unknown = pair_of(n)
        pair = [known, unknown]
        order.shuffle(pair)
        took = {username: timed(client, username) for username in pair}
        if n >= 0:
            differences.append(took[known] - took[unknown])
            durations.extend(took.values())

    typical = statistics.median(durations)
    difference = abs(statistics.median(differences)) / typical
    assert difference < 0.10, (
        f"a wrong password takes {statistics.median(differences) * 1000:+.2f} ms more than "
        f"an unknown user (median of {REQUESTS_OF_EACH_KIND} pairs), against "
        f"{typical * 1000:.2f} ms a request: {difference:.1%}"
    )


def test_unknown_user_and_wrong_password_take_the_same_time(
    database_url: str, password: str
) -> None:
    settings = make_settings(
        database_url, **REALISTIC_ARGON2, hash_workers=1, lockout_threshold=1_000_000
    )
    add_user(settings, "alice", password)

    with serving(settings) as client:
        compare_in_pairs(client, lambda _: ("alice", "nobody"))


def test_first_failures_of_a_user_and_of_an_unknown_name_take_the_same_time(
    database_url: str, password: str
) -> None:
    settings = make_settings(database_url, **REALISTIC_ARGON2, hash_workers=1)
    with UserAdmin(settings) as admin:
        for n in range(-WARM_UP_REQUESTS, REQUESTS_OF_EACH_KIND):
            admin.add(f"user{n + WARM_UP_REQUESTS:04d}", password)

    with serving(settings) as client:
        compare_in_pairs(
            client,
            lambda n: (f"user{n + WARM_UP_REQUESTS:04d}", f"name{n + WARM_UP_REQUESTS:04d}"),
        )
