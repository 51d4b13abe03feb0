"""A small load generator in Python, for the smoke run where wrk is not installed.

It does what the wrk scripts in ``bench/wrk`` do, checking every answer the same
way, and writes the same JSON results. It is far slower than wrk, so it is
never used for a full run: ``python -m bench`` refuses to measure without wrk.

Run it as ``python -m bench.pyload --url URL --kind create|get --connections N
--seconds S --results FILE [--prefix P] [--stored N] [--token-file FILE]``; with
a token file, every request presents its client token.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import uvloop

from bench.clients import authorization

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from contextlib import AbstractAsyncContextManager

REQUEST_TIMEOUT_SECONDS = 10.0
PASSWORD = "bench-password-1"  # noqa: S105 (a throwaway password for throwaway accounts)
"""The password every load sends (``bench/wrk/create_account.lua`` too), and seeded users have."""


@dataclass
class Tally:
    """What a closed-loop load counted: latencies, good and bad answers, failures."""

    latencies: list[float] = field(default_factory=list)
    good: int = 0
    bad: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    example: str = ""

    def count_bad(self, example: str) -> None:
        """Count a bad answer, keeping the first one's text as the example."""
        self.bad += 1
        if not self.example:
            self.example = example[:200]


def quantile(values: list[float], percent: int) -> float:
    """Return the ``percent``-th percentile of ``values`` (inclusive method), 0 for none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def wrk_results(tally: Tally, duration: float) -> dict[str, object]:
    """Return ``tally`` over ``duration`` seconds with the keys the wrk scripts write."""
    return {
        "good": tally.good,
        "bad": tally.bad,
        "responses": len(tally.latencies),
        "duration_us": round(duration * 1e6),
        "connect_errors": tally.connection_errors,
        "read_errors": 0,
        "write_errors": 0,
        "timeouts": tally.timeouts,
        "p50_us": round(quantile(tally.latencies, 50) * 1e6),
        "p99_us": round(quantile(tally.latencies, 99) * 1e6),
        "max_us": round(max(tally.latencies, default=0.0) * 1e6),
        "example": tally.example,
    }


async def _send(
    request: AbstractAsyncContextManager[aiohttp.ClientResponse], tally: Tally
) -> tuple[int, str] | None:
    """Send ``request`` and time it; ``None`` (counted in ``tally``) if no answer came."""
    sent = time.perf_counter()
    try:
        async with request as response:
            answered = response.status, await response.text()
    except TimeoutError:
        tally.timeouts += 1
        return None
    except aiohttp.ClientError:
        tally.connection_errors += 1
        return None
    tally.latencies.append(time.perf_counter() - sent)
    return answered


async def _create_accounts(
    session: aiohttp.ClientSession,
    deadline: float,
    usernames: Iterator[str],
    tally: Tally,
) -> None:
    while time.perf_counter() < deadline:
        username = next(usernames)
        answered = await _send(
            session.post("/accounts", json={"username": username, "password": PASSWORD}), tally
        )
        if answered is None:
            continue
        status, body = answered
        answer = _json(body)
        if (
            status == 201  # noqa: PLR2004
            and answer.get("username") == username
            and answer.get("status") == "created"
        ):
            tally.good += 1
        else:
            tally.count_bad(f"{status} {body}")


async def _get_accounts(
    session: aiohttp.ClientSession, deadline: float, stored: int, tally: Tally
) -> None:
    while time.perf_counter() < deadline:
        account_id = random.randint(1, stored)  # noqa: S311 (which account to read, not a secret)
        answered = await _send(session.get(f"/accounts/{account_id}"), tally)
        if answered is None:
            continue
        status, body = answered
        answer = _json(body)
        if (
            status == 200  # noqa: PLR2004
            and answer.get("id") == account_id
            and answer.get("username") == f"seeded{account_id:07d}"
            and answer.get("status") == "active"
        ):
            tally.good += 1
        else:
            tally.count_bad(f"{status} {body}")


def _json(body: str) -> dict[str, object]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def run(  # noqa: PLR0913 (the load's parameters, by name)
    url: str,
    *,
    kind: str,
    connections: int,
    seconds: float,
    prefix: str,
    stored: int,
    headers: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Drive ``url`` with ``connections`` clients for ``seconds`` and check every answer.

    Args:
        url: The service's base URL.
        kind: ``"create"`` (``POST /accounts``) or ``"get"`` (``GET /accounts/{id}``).
        connections: Concurrent connections, one client on each.
        seconds: How long to drive it.
        prefix: Prefix of the new usernames (``create``): ``{prefix}t0n1``, ``{prefix}t0n2``...,
            as wrk's one thread names them.
        stored: Accounts stored beforehand, with ids 1..stored (``get``).
        headers: Sent with every request (the client token's).

    Returns:
        The results, with the keys the wrk scripts write.
    """
    tally = Tally()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(
        url, timeout=timeout, connector=connector, headers=headers
    ) as session:
        started = time.perf_counter()
        deadline = started + seconds
        if kind == "create":
            # As wrk with one thread names them (bench/wrk/create_account.lua).
            usernames = (f"{prefix}t0n{counter}" for counter in itertools.count(1))
            clients = [
                _create_accounts(session, deadline, usernames, tally) for _ in range(connections)
            ]
        else:
            clients = [_get_accounts(session, deadline, stored, tally) for _ in range(connections)]
        await asyncio.gather(*clients)
        duration = time.perf_counter() - started
    return wrk_results(tally, duration)


def main(argv: list[str] | None = None) -> int:
    """Run the load and write its results.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--url", required=True, help="the service's base URL")
    parser.add_argument("--kind", choices=["create", "get"], required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--results", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--prefix", default="pyload", help="prefix of new usernames")
    parser.add_argument("--stored", type=int, default=1, help="accounts stored beforehand")
    parser.add_argument("--token-file", type=Path, help="the client token every request presents")
    arguments = parser.parse_args(argv)
    results = uvloop.run(
        run(
            arguments.url,
            kind=arguments.kind,
            connections=arguments.connections,
            seconds=arguments.seconds,
            prefix=arguments.prefix,
            stored=arguments.stored,
            headers=authorization(arguments.token_file),
        )
    )
    arguments.results.write_text(json.dumps(results) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
